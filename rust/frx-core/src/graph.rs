//! Graph sampling on a compressed sparse row (CSR) graph: seeded random walks, k-hop fan-out
//! samples and connected k-node subgraphs around start nodes.
//!
//! Built from edge arrays (`src`, `dst`, optional `weight`, optional edge type). An undirected
//! graph stores each edge in both directions. Weighted steps pick a neighbour with probability
//! proportional to the edge weight in O(1) through a per-node alias table. Each start gets its
//! own random stream from `(seed, start position)`, so results do not depend on threads.

use crate::error::{invalid, Result};
use crate::rng::Rng;
use rayon::prelude::*;

/// Walks stepped together by one thread (see [`Graph::random_walks`]).
const WALK_GROUP: usize = 16;

pub struct Graph {
    num_nodes: usize,
    directed: bool,
    indptr: Vec<u64>,
    indices: Vec<u32>,
    edge_type: Option<Vec<i32>>,
    weight: Option<Vec<f64>>,
    /// Alias tables over each node's out-edges (weighted graphs only).
    alias_prob: Vec<f32>,
    alias_idx: Vec<u32>,
    /// Sum of out-edge weights per node (weighted graphs only).
    node_weight: Vec<f64>,
}

/// Edges drawn by [`Graph::khop`], one row per sampled edge.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Khop {
    pub sample: Vec<i64>,
    pub hop: Vec<i32>,
    pub src: Vec<i64>,
    pub dst: Vec<i64>,
    pub edge_type: Vec<i32>,
}

impl Graph {
    pub fn from_edges(
        src: &[i64],
        dst: &[i64],
        weight: Option<&[f64]>,
        edge_type: Option<&[i32]>,
        num_nodes: Option<usize>,
        directed: bool,
    ) -> Result<Self> {
        if src.len() != dst.len() {
            return invalid(format!(
                "src has {} entries but dst has {}",
                src.len(),
                dst.len()
            ));
        }
        if weight.is_some_and(|w| w.len() != src.len()) {
            return invalid("weight must have one entry per edge");
        }
        if edge_type.is_some_and(|t| t.len() != src.len()) {
            return invalid("edge_type must have one entry per edge");
        }
        let max_id = src.iter().chain(dst).copied().max().unwrap_or(-1);
        if let Some(bad) = src.iter().chain(dst).find(|&&v| v < 0) {
            return invalid(format!("node ids must be non-negative, got {bad}"));
        }
        let n = match num_nodes {
            Some(n) if (max_id as i128) >= n as i128 => {
                return invalid(format!(
                    "node id {max_id} is out of range for num_nodes={n}"
                ))
            }
            Some(n) => n,
            None => (max_id + 1) as usize,
        };
        if n > u32::MAX as usize {
            return invalid("graphs are limited to 4 billion nodes");
        }
        if let Some(w) = weight {
            if let Some(bad) = w.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
                return invalid(format!(
                    "weights must be finite and non-negative, got {bad}"
                ));
            }
        }
        let both = if directed { 1 } else { 2 };
        let m = src.len() * both;
        let mut indptr = vec![0u64; n + 1];
        for (&s, &d) in src.iter().zip(dst) {
            indptr[s as usize + 1] += 1;
            if !directed {
                indptr[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        let mut fill: Vec<u64> = indptr[..n].to_vec();
        let mut indices = vec![0u32; m];
        let mut et = edge_type.map(|_| vec![0i32; m]);
        let mut wt = weight.map(|_| vec![0f64; m]);
        let mut put = |from: i64, to: i64, e: usize| {
            let at = fill[from as usize] as usize;
            fill[from as usize] += 1;
            indices[at] = to as u32;
            if let (Some(et), Some(t)) = (et.as_mut(), edge_type) {
                et[at] = t[e];
            }
            if let (Some(wt), Some(w)) = (wt.as_mut(), weight) {
                wt[at] = w[e];
            }
        };
        for e in 0..src.len() {
            put(src[e], dst[e], e);
            if !directed {
                put(dst[e], src[e], e);
            }
        }
        let mut g = Graph {
            num_nodes: n,
            directed,
            indptr,
            indices,
            edge_type: et,
            weight: wt,
            alias_prob: Vec::new(),
            alias_idx: Vec::new(),
            node_weight: Vec::new(),
        };
        g.build_alias();
        Ok(g)
    }

    /// Vose's alias method over each node's out-edges.
    fn build_alias(&mut self) {
        let Some(w) = &self.weight else { return };
        let m = self.indices.len();
        self.alias_prob = vec![1.0; m];
        self.alias_idx = vec![0; m];
        self.node_weight = vec![0.0; self.num_nodes];
        let (mut small, mut large, mut scaled) = (Vec::new(), Vec::new(), Vec::new());
        for v in 0..self.num_nodes {
            let (s, e) = (self.indptr[v] as usize, self.indptr[v + 1] as usize);
            let total: f64 = w[s..e].iter().sum();
            self.node_weight[v] = total;
            if total <= 0.0 {
                continue;
            }
            let d = (e - s) as f64;
            scaled.clear();
            scaled.extend(w[s..e].iter().map(|x| x * d / total));
            small.clear();
            large.clear();
            for (j, &p) in scaled.iter().enumerate() {
                if p < 1.0 {
                    small.push(j)
                } else {
                    large.push(j)
                }
            }
            while let (Some(&l), Some(&g)) = (small.last(), large.last()) {
                small.pop();
                self.alias_prob[s + l] = scaled[l] as f32;
                self.alias_idx[s + l] = g as u32;
                scaled[g] -= 1.0 - scaled[l];
                if scaled[g] < 1.0 {
                    large.pop();
                    small.push(g);
                }
            }
            for &j in small.iter().chain(large.iter()) {
                self.alias_prob[s + j] = 1.0;
                self.alias_idx[s + j] = j as u32;
            }
        }
    }

    pub fn num_nodes(&self) -> usize {
        self.num_nodes
    }
    /// Stored (directed) edges: twice the input edges for an undirected graph.
    pub fn num_edges(&self) -> usize {
        self.indices.len()
    }
    pub fn directed(&self) -> bool {
        self.directed
    }
    pub fn indptr(&self) -> &[u64] {
        &self.indptr
    }
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    #[inline]
    fn range(&self, v: u32) -> (usize, usize) {
        (
            self.indptr[v as usize] as usize,
            self.indptr[v as usize + 1] as usize,
        )
    }

    /// Position (in `indices`) of a random out-edge of `v`, or `None` at a dead end.
    #[inline]
    fn step(&self, v: u32, rng: &mut Rng) -> Option<usize> {
        let (s, e) = self.range(v);
        if s == e {
            return None;
        }
        let j = rng.below((e - s) as u64) as usize;
        if self.weight.is_none() {
            return Some(s + j);
        }
        if self.node_weight[v as usize] <= 0.0 {
            return None;
        }
        if (rng.unit() as f32) < self.alias_prob[s + j] {
            Some(s + j)
        } else {
            Some(s + self.alias_idx[s + j] as usize)
        }
    }

    fn check_starts(&self, starts: &[i64]) -> Result<()> {
        match starts
            .iter()
            .find(|&&v| v < 0 || v as u64 >= self.num_nodes as u64)
        {
            Some(bad) => invalid(format!(
                "start node {bad} is not in the graph ({} nodes)",
                self.num_nodes
            )),
            None => Ok(()),
        }
    }

    /// One walk per start, `length` steps: a row-major `(starts, length + 1)` array whose first
    /// column is the start; a walk that reaches a node without out-edges is padded with -1.
    pub fn random_walks(&self, starts: &[i64], length: usize, seed: u64) -> Result<Vec<i64>> {
        self.check_starts(starts)?;
        let width = length + 1;
        let mut out = vec![-1i64; starts.len() * width];
        // Walks advance in groups of WALK_GROUP, one step of each in turn: every step is a
        // dependent chain of cache misses (offsets, then neighbour), and independent walks let
        // those misses overlap. Each walk still has its own random stream, so the result is
        // the same as walking them one by one.
        out.par_chunks_mut(width * WALK_GROUP)
            .with_min_len(4)
            .enumerate()
            .for_each(|(chunk, rows)| {
                let first = chunk * WALK_GROUP;
                let g = rows.len() / width;
                let mut rngs: [Rng; WALK_GROUP] =
                    std::array::from_fn(|k| Rng::for_row(seed, (first + k) as u64));
                let mut cur = [0u32; WALK_GROUP];
                let mut alive = [false; WALK_GROUP];
                for k in 0..g {
                    cur[k] = starts[first + k] as u32;
                    alive[k] = true;
                    rows[k * width] = cur[k] as i64;
                }
                for step in 1..width {
                    let mut any = false;
                    for k in 0..g {
                        if !alive[k] {
                            continue;
                        }
                        match self.step(cur[k], &mut rngs[k]) {
                            Some(e) => {
                                cur[k] = self.indices[e];
                                rows[k * width + step] = cur[k] as i64;
                                any = true;
                            }
                            None => alive[k] = false,
                        }
                    }
                    if !any {
                        break;
                    }
                }
            });
        Ok(out)
    }

    /// Fan-out sampling: from each start, up to `fanouts[0]` distinct out-edges, then from each
    /// node reached up to `fanouts[1]` of its out-edges, and so on. Edges are drawn without
    /// replacement, uniformly or (weighted graphs) by weight.
    pub fn khop(&self, starts: &[i64], fanouts: &[usize], seed: u64) -> Result<Khop> {
        self.check_starts(starts)?;
        if fanouts.is_empty() {
            return invalid("fanouts must list at least one hop");
        }
        let parts: Vec<Vec<(i32, u32, u32, usize)>> = starts
            .par_iter()
            .with_min_len(16)
            .enumerate()
            .map(|(i, &start)| {
                let mut rng = Rng::for_row(seed, i as u64);
                let mut frontier = vec![start as u32];
                let mut edges = Vec::new();
                let mut picked = Vec::new();
                for (h, &f) in fanouts.iter().enumerate() {
                    let mut next = Vec::new();
                    for &v in &frontier {
                        self.sample_edges(v, f, &mut rng, &mut picked);
                        for &e in &picked {
                            edges.push((h as i32, v, self.indices[e], e));
                            next.push(self.indices[e]);
                        }
                    }
                    frontier = next;
                }
                edges
            })
            .collect();
        let mut out = Khop::default();
        for (i, edges) in parts.into_iter().enumerate() {
            for (h, s, d, e) in edges {
                out.sample.push(i as i64);
                out.hop.push(h);
                out.src.push(s as i64);
                out.dst.push(d as i64);
                out.edge_type
                    .push(self.edge_type.as_ref().map_or(0, |t| t[e]));
            }
        }
        Ok(out)
    }

    /// Up to `k` distinct out-edge positions of `v`, without replacement, in position order.
    fn sample_edges(&self, v: u32, k: usize, rng: &mut Rng, out: &mut Vec<usize>) {
        out.clear();
        let (s, e) = self.range(v);
        let d = e - s;
        match &self.weight {
            None if d <= k => out.extend(s..e),
            None => {
                // Floyd's algorithm: k distinct positions in O(k^2) for small k.
                for j in d - k..d {
                    let t = rng.below(j as u64 + 1) as usize;
                    let pick = if out.contains(&(s + t)) { s + j } else { s + t };
                    out.push(pick);
                }
            }
            Some(w) => {
                // Efraimidis-Spirakis: keep the k smallest Exp(1)/w keys; zero weights never.
                let mut keyed: Vec<(f64, usize)> = (s..e)
                    .filter(|&p| w[p] > 0.0)
                    .map(|p| (-(1.0 - rng.unit()).ln() / w[p], p))
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
                out.extend(keyed.into_iter().take(k).map(|(_, p)| p));
            }
        }
        out.sort_unstable();
    }

    /// A connected set of up to `k` nodes around each start, grown one node at a time across a
    /// random edge leaving the set (uniform over such edges, or by weight). Row-major
    /// `(starts, k)`, the start first, padded with -1 when its component has fewer than `k` nodes.
    pub fn subgraphs(&self, starts: &[i64], k: usize, seed: u64) -> Result<Vec<i64>> {
        self.check_starts(starts)?;
        if !(1..=64).contains(&k) {
            return invalid(format!("k must be between 1 and 64, got {k}"));
        }
        let mut out = vec![-1i64; starts.len() * k];
        out.par_chunks_mut(k)
            .with_min_len(64)
            .enumerate()
            .for_each(|(i, row)| {
                let mut rng = Rng::for_row(seed, i as u64);
                let mut set: Vec<u32> = Vec::with_capacity(k);
                set.push(starts[i] as u32);
                let mut boundary: Vec<(usize, f64)> = Vec::new();
                while set.len() < k {
                    match self.grow(&set, &mut rng, &mut boundary) {
                        Some(v) => set.push(v),
                        None => break,
                    }
                }
                for (slot, v) in row.iter_mut().zip(&set) {
                    *slot = *v as i64;
                }
            });
        Ok(out)
    }

    /// A node outside `set` reached by a random edge leaving `set`, or `None` if there is none.
    fn grow(&self, set: &[u32], rng: &mut Rng, boundary: &mut Vec<(usize, f64)>) -> Option<u32> {
        let inside = |v: u32| set.contains(&v);
        let weight_of = |v: u32| match &self.weight {
            None => {
                let (s, e) = self.range(v);
                (e - s) as f64
            }
            Some(_) => self.node_weight[v as usize],
        };
        let total: f64 = set.iter().map(|&v| weight_of(v)).sum();
        if total <= 0.0 {
            return None;
        }
        // Rejection: pick a set member by out-weight, then one of its edges; retry if it points
        // back inside. Exact for the target distribution; falls back to listing the boundary.
        for _ in 0..32 {
            let mut x = rng.unit() * total;
            let mut from = set[set.len() - 1];
            for &v in set {
                let wv = weight_of(v);
                if x < wv {
                    from = v;
                    break;
                }
                x -= wv;
            }
            if let Some(e) = self.step(from, rng) {
                if !inside(self.indices[e]) {
                    return Some(self.indices[e]);
                }
            }
        }
        boundary.clear();
        let mut sum = 0.0;
        for &v in set {
            let (s, e) = self.range(v);
            for p in s..e {
                let w = self.weight.as_ref().map_or(1.0, |w| w[p]);
                if w > 0.0 && !inside(self.indices[p]) {
                    sum += w;
                    boundary.push((p, sum));
                }
            }
        }
        if boundary.is_empty() {
            return None;
        }
        let x = rng.unit() * sum;
        let at = boundary
            .partition_point(|&(_, c)| c <= x)
            .min(boundary.len() - 1);
        Some(self.indices[boundary[at].0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> Graph {
        // 0 - 1 - 2 - 3, plus an isolated node 4.
        Graph::from_edges(&[0, 1, 2], &[1, 2, 3], None, None, Some(5), false).unwrap()
    }

    #[test]
    fn csr_layout() {
        let g = path();
        assert_eq!(g.indptr(), &[0, 1, 3, 5, 6, 6]);
        assert_eq!(g.indices(), &[1, 0, 2, 1, 3, 2]);
        let d = Graph::from_edges(&[0, 1, 2], &[1, 2, 3], None, None, None, true).unwrap();
        assert_eq!((d.num_nodes(), d.num_edges()), (4, 3));
    }

    #[test]
    fn walks_follow_edges_and_stop_at_dead_ends() {
        let g = path();
        let w = g.random_walks(&[0, 4, 3], 5, 1).unwrap();
        for row in w.chunks(6) {
            for p in row.windows(2).filter(|p| p[1] >= 0) {
                assert_eq!((p[0] - p[1]).abs(), 1);
            }
        }
        assert_eq!(&w[6..12], &[4, -1, -1, -1, -1, -1]);
        assert_eq!(w, g.random_walks(&[0, 4, 3], 5, 1).unwrap());
        assert_ne!(w, g.random_walks(&[0, 4, 3], 5, 2).unwrap());
    }

    #[test]
    fn weighted_steps_follow_weights() {
        let g = Graph::from_edges(
            &[0, 0, 0],
            &[1, 2, 3],
            Some(&[1.0, 2.0, 7.0]),
            None,
            None,
            true,
        )
        .unwrap();
        let w = g.random_walks(&vec![0; 20_000], 1, 5).unwrap();
        let mut counts = [0usize; 4];
        for row in w.chunks(2) {
            counts[row[1] as usize] += 1;
        }
        assert!(
            (counts[1] as f64 / 20_000.0 - 0.1).abs() < 0.01,
            "{counts:?}"
        );
        assert!(
            (counts[3] as f64 / 20_000.0 - 0.7).abs() < 0.015,
            "{counts:?}"
        );
    }

    #[test]
    fn khop_and_subgraphs() {
        let g = path();
        let k = g.khop(&[1], &[5, 1], 0).unwrap();
        assert_eq!(k.src[..2], [1, 1]);
        assert_eq!(k.hop, vec![0, 0, 1, 1]);
        let s = g.subgraphs(&[0, 4, 2], 3, 3).unwrap();
        assert_eq!(&s[..3], &[0, 1, 2]);
        assert_eq!(&s[3..6], &[4, -1, -1]);
        assert!(g.subgraphs(&[0], 0, 0).is_err());
        assert!(g.random_walks(&[5], 2, 0).is_err());
        assert!(Graph::from_edges(&[0], &[1, 2], None, None, None, false).is_err());
        assert!(Graph::from_edges(&[0], &[3], None, None, Some(2), false).is_err());
        assert!(Graph::from_edges(&[0], &[1], Some(&[f64::NAN]), None, None, false).is_err());
    }
}
