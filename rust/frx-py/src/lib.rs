//! Thin PyO3 bindings over frx-core: convert inputs, release the GIL, call the kernel, map
//! errors to `ValueError`. String columns arrive as Arrow buffers (data bytes, offsets,
//! optional validity) viewed through numpy, so nothing is copied on the way in.

use frx_core::dedup::{
    exact, ExactIndex as CoreExactIndex, NearIndex as CoreNearIndex, NearParams,
};
use frx_core::graph::Graph as CoreGraph;
use frx_core::refusal::Matcher as CoreMatcher;
use frx_core::text::{normalize_into, Offsets, StrColumn};
use frx_core::FrxError;
use numpy::{
    IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type Arr<'py, T> = Bound<'py, PyArray1<T>>;
/// (row, pattern id, start, first sentence)
type ScanArrays<'py> = (Arr<'py, i64>, Arr<'py, u32>, Arr<'py, i64>, Arr<'py, bool>);
/// (label, api, confidence, rule id, evidence offsets, evidence bytes)
type JudgeArrays<'py> = (
    Arr<'py, u8>,
    Arr<'py, bool>,
    Arr<'py, f32>,
    Arr<'py, u8>,
    Arr<'py, i64>,
    Arr<'py, u8>,
);
/// (sample, hop, src, dst, edge type)
type KhopArrays<'py> = (
    Arr<'py, i64>,
    Arr<'py, i32>,
    Arr<'py, i64>,
    Arr<'py, i64>,
    Arr<'py, i32>,
);

fn err(e: FrxError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

enum OffsetArray<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

/// The three Arrow buffers of a string column, borrowed from Python for the call.
struct Column<'py> {
    data: PyReadonlyArray1<'py, u8>,
    offsets: OffsetArray<'py>,
    valid: Option<PyReadonlyArray1<'py, bool>>,
}

impl<'py> Column<'py> {
    fn new(
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Self> {
        let offsets = if let Ok(o) = offsets.extract::<PyReadonlyArray1<'py, i64>>() {
            OffsetArray::I64(o)
        } else if let Ok(o) = offsets.extract::<PyReadonlyArray1<'py, i32>>() {
            OffsetArray::I32(o)
        } else {
            return Err(PyValueError::new_err(
                "offsets must be a 1-d int32 or int64 array",
            ));
        };
        Ok(Column {
            data,
            offsets,
            valid,
        })
    }

    fn view(&self) -> PyResult<StrColumn<'_>> {
        let data = slice(&self.data, "data")?;
        let offsets = match &self.offsets {
            OffsetArray::I32(o) => Offsets::I32(slice(o, "offsets")?),
            OffsetArray::I64(o) => Offsets::I64(slice(o, "offsets")?),
        };
        let valid = self.valid.as_ref().map(|v| slice(v, "valid")).transpose()?;
        StrColumn::new(data, offsets, valid).map_err(err)
    }
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be a contiguous 1-d array")))
}

/// normalize(data, offsets, valid) -> list[str | None]
#[pyfunction]
#[pyo3(signature = (data, offsets, valid=None))]
fn normalize<'py>(
    py: Python<'py>,
    data: PyReadonlyArray1<'py, u8>,
    offsets: &Bound<'py, PyAny>,
    valid: Option<PyReadonlyArray1<'py, bool>>,
) -> PyResult<Vec<Option<String>>> {
    let col = Column::new(data, offsets, valid)?;
    let view = col.view()?;
    py.detach(|| {
        let mut buf = Vec::new();
        (0..view.len())
            .map(|i| {
                Ok(view.try_get(i)?.map(|s| {
                    normalize_into(s, &mut buf);
                    String::from_utf8(buf.clone()).expect("normalised text is UTF-8")
                }))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(err)
}

/// exact_dedup(data, offsets, valid) -> (keep: bool[n], group: int64[n])
#[pyfunction]
#[pyo3(signature = (data, offsets, valid=None))]
fn exact_dedup<'py>(
    py: Python<'py>,
    data: PyReadonlyArray1<'py, u8>,
    offsets: &Bound<'py, PyAny>,
    valid: Option<PyReadonlyArray1<'py, bool>>,
) -> PyResult<(Arr<'py, bool>, Arr<'py, i64>)> {
    let col = Column::new(data, offsets, valid)?;
    let view = col.view()?;
    let r = py.detach(|| exact(&view)).map_err(err)?;
    Ok((r.keep.into_pyarray(py), r.group.into_pyarray(py)))
}

/// A string column passed as its three Arrow buffers: `(data, offsets, valid)`.
type Buffers<'py> = (
    PyReadonlyArray1<'py, u8>,
    Bound<'py, PyAny>,
    Option<PyReadonlyArray1<'py, bool>>,
);

fn column<'py>(b: Buffers<'py>) -> PyResult<Column<'py>> {
    Column::new(b.0, &b.1, b.2)
}

/// The learned judge's feature settings (frx_core::features::Config).
#[allow(clippy::too_many_arguments)]
fn feature_config(
    bits: u32,
    opening_bytes: usize,
    closing_bytes: usize,
    max_bytes: usize,
    char_bytes: usize,
) -> frx_core::features::Config {
    frx_core::features::Config {
        bits,
        opening_bytes,
        closing_bytes,
        max_bytes,
        char_bytes,
    }
}

/// features(responses, prompts, *, bits, opening_bytes, closing_bytes, max_bytes, char_bytes)
/// -> (indptr int64[n+1], indices uint32[nnz], dense float32[n*d]); `responses` and `prompts`
/// (or None) are `(data, offsets, valid)` buffer triples.
#[pyfunction]
#[pyo3(signature = (responses, prompts=None, *, bits, opening_bytes, closing_bytes, max_bytes, char_bytes))]
#[allow(clippy::too_many_arguments)]
fn features<'py>(
    py: Python<'py>,
    responses: Buffers<'py>,
    prompts: Option<Buffers<'py>>,
    bits: u32,
    opening_bytes: usize,
    closing_bytes: usize,
    max_bytes: usize,
    char_bytes: usize,
) -> PyResult<(Arr<'py, i64>, Arr<'py, u32>, Arr<'py, f32>)> {
    let cfg = feature_config(bits, opening_bytes, closing_bytes, max_bytes, char_bytes);
    let r = column(responses)?;
    let p = prompts.map(column).transpose()?;
    let (rv, pv) = (r.view()?, p.as_ref().map(|c| c.view()).transpose()?);
    let (indptr, indices, dense) = py
        .detach(|| frx_core::features::features(&rv, pv.as_ref(), &cfg))
        .map_err(err)?;
    Ok((
        indptr.into_pyarray(py),
        indices.into_pyarray(py),
        dense.into_pyarray(py),
    ))
}

/// feature_scores(responses, prompts, *, weights float32[2^bits, k], bits, ...) ->
/// (scores float32[n*k], dense float32[n*d]): a linear model's hashed part, summed as the
/// features are hashed (none is stored), and the dense features.
#[pyfunction]
#[pyo3(signature = (responses, prompts=None, *, weights, bits, opening_bytes, closing_bytes, max_bytes, char_bytes))]
#[allow(clippy::too_many_arguments)]
fn feature_scores<'py>(
    py: Python<'py>,
    responses: Buffers<'py>,
    prompts: Option<Buffers<'py>>,
    weights: PyReadonlyArray2<'py, f32>,
    bits: u32,
    opening_bytes: usize,
    closing_bytes: usize,
    max_bytes: usize,
    char_bytes: usize,
) -> PyResult<(Arr<'py, f32>, Arr<'py, f32>)> {
    let cfg = feature_config(bits, opening_bytes, closing_bytes, max_bytes, char_bytes);
    let shape = weights.shape();
    if bits > 31 || shape[0] != 1usize << bits || shape[1] == 0 {
        return Err(PyValueError::new_err(format!(
            "weights must have shape (2**{bits}, k), got {shape:?}"
        )));
    }
    let k = shape[1];
    // `as_slice` also accepts Fortran order, which would be read transposed.
    if !weights.is_c_contiguous() {
        return Err(PyValueError::new_err("weights must be C-contiguous"));
    }
    let w = weights
        .as_slice()
        .map_err(|_| PyValueError::new_err("weights must be C-contiguous"))?;
    let r = column(responses)?;
    let p = prompts.map(column).transpose()?;
    let (rv, pv) = (r.view()?, p.as_ref().map(|c| c.view()).transpose()?);
    let (scores, dense) = py
        .detach(|| frx_core::features::scores(&rv, pv.as_ref(), &cfg, w, k))
        .map_err(err)?;
    Ok((scores.into_pyarray(py), dense.into_pyarray(py)))
}

/// The dense feature names, in column order.
#[pyfunction]
fn feature_names() -> Vec<&'static str> {
    frx_core::features::DENSE.to_vec()
}

/// The pattern step's rules by id: (name, label code, api, evidence template).
#[pyfunction]
fn judge_rules() -> Vec<(&'static str, u8, bool, &'static str)> {
    frx_core::judge::RULES
        .iter()
        .map(|r| (r.name, r.label, r.api, r.template))
        .collect()
}

#[pyclass(module = "frx._core")]
#[derive(Default)]
struct ExactIndex {
    inner: CoreExactIndex,
}

#[pymethods]
impl ExactIndex {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[pyo3(signature = (data, offsets, valid=None))]
    fn add<'py>(
        &mut self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Arr<'py, i64>> {
        let col = Column::new(data, offsets, valid)?;
        let view = col.view()?;
        let inner = &mut self.inner;
        Ok(py
            .detach(|| inner.add(&view))
            .map_err(err)?
            .into_pyarray(py))
    }
}

/// Incremental MinHash-LSH near-duplicate index.
#[pyclass(module = "frx._core")]
struct NearIndex {
    inner: CoreNearIndex,
}

#[pymethods]
impl NearIndex {
    #[new]
    #[pyo3(signature = (threshold=0.7, num_perm=128, ngram=3, seed=0))]
    fn new(threshold: f64, num_perm: usize, ngram: usize, seed: u64) -> PyResult<Self> {
        let inner = CoreNearIndex::new(NearParams {
            threshold,
            num_perm,
            ngram,
            seed,
        })
        .map_err(err)?;
        Ok(NearIndex { inner })
    }

    #[getter]
    fn threshold(&self) -> f64 {
        self.inner.params().threshold
    }
    #[getter]
    fn num_perm(&self) -> usize {
        self.inner.params().num_perm
    }
    #[getter]
    fn ngram(&self) -> usize {
        self.inner.params().ngram
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.params().seed
    }
    #[getter]
    fn bands(&self) -> usize {
        self.inner.bands()
    }
    #[getter]
    fn rows(&self) -> usize {
        self.inner.rows()
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[pyo3(signature = (data, offsets, valid=None))]
    fn add<'py>(
        &mut self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let col = Column::new(data, offsets, valid)?;
        let view = col.view()?;
        let inner = &mut self.inner;
        let ids = py.detach(|| inner.add(&view)).map_err(err)?;
        Ok(ids.into_pyarray(py))
    }

    #[pyo3(signature = (data, offsets, valid=None))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<(Arr<'py, i64>, Arr<'py, f64>)> {
        let col = Column::new(data, offsets, valid)?;
        let view = col.view()?;
        let (ids, sims) = py.detach(|| self.inner.query(&view)).map_err(err)?;
        Ok((ids.into_pyarray(py), sims.into_pyarray(py)))
    }

    #[pyo3(signature = (data, offsets, valid=None))]
    fn signatures<'py>(
        &self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let col = Column::new(data, offsets, valid)?;
        let view = col.view()?;
        let sigs = py.detach(|| self.inner.signatures(&view)).map_err(err)?;
        let shape = [view.len(), self.inner.params().num_perm];
        Ok(sigs.into_pyarray(py).reshape(shape)?.into_any())
    }

    fn clusters<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let inner = &mut self.inner;
        py.detach(|| inner.clusters()).into_pyarray(py)
    }
}

/// Compiled refusal lexicon.
#[pyclass(module = "frx._core", frozen)]
struct Matcher {
    inner: CoreMatcher,
}

#[pymethods]
impl Matcher {
    #[new]
    #[pyo3(signature = (phrases, patterns=Vec::new()))]
    fn new(py: Python<'_>, phrases: Vec<String>, patterns: Vec<String>) -> PyResult<Self> {
        let inner = py
            .detach(|| CoreMatcher::new(&phrases, &patterns))
            .map_err(err)?;
        Ok(Matcher { inner })
    }

    #[getter]
    fn num_patterns(&self) -> usize {
        self.inner.num_patterns()
    }

    #[pyo3(signature = (data, offsets, valid=None))]
    fn any<'py>(
        &self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let col = Column::new(data, offsets, valid)?;
        let view = col.view()?;
        Ok(py
            .detach(|| self.inner.any(&view))
            .map_err(err)?
            .into_pyarray(py))
    }

    /// -> (row int64, pattern_id uint32, start int64, first_sentence bool)
    #[pyo3(signature = (data, offsets, valid=None))]
    fn scan<'py>(
        &self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<ScanArrays<'py>> {
        let col = Column::new(data, offsets, valid)?;
        let view = col.view()?;
        let s = py.detach(|| self.inner.scan(&view)).map_err(err)?;
        Ok((
            s.row.into_pyarray(py),
            s.pattern.into_pyarray(py),
            s.start.into_pyarray(py),
            s.first_sentence.into_pyarray(py),
        ))
    }
}

/// The judge's pattern step (frx_core::judge::Judge), compiled from five phrase lists.
#[pyclass(module = "frx._core", frozen)]
struct Judge {
    inner: frx_core::judge::Judge,
}

#[pymethods]
impl Judge {
    #[new]
    fn new(
        py: Python<'_>,
        decline: Vec<String>,
        sympathy: Vec<String>,
        pivot: Vec<String>,
        alternative: Vec<String>,
        hedge: Vec<String>,
    ) -> PyResult<Self> {
        let inner = py
            .detach(|| {
                frx_core::judge::Judge::new(&decline, &sympathy, &pivot, &alternative, &hedge)
            })
            .map_err(err)?;
        Ok(Judge { inner })
    }

    /// -> (label uint8, api bool, confidence float32, rule id uint8, evidence offsets int64,
    /// evidence bytes uint8)
    #[pyo3(signature = (data, offsets, valid=None))]
    fn judge<'py>(
        &self,
        py: Python<'py>,
        data: PyReadonlyArray1<'py, u8>,
        offsets: &Bound<'py, PyAny>,
        valid: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<JudgeArrays<'py>> {
        let col = Column::new(data, offsets, valid)?;
        let view = col.view()?;
        let v = py.detach(|| self.inner.judge_column(&view)).map_err(err)?;
        Ok((
            v.label.into_pyarray(py),
            v.api.into_pyarray(py),
            v.confidence.into_pyarray(py),
            v.rule.into_pyarray(py),
            v.evidence_offsets.into_pyarray(py),
            v.evidence.into_pyarray(py),
        ))
    }
}

/// CSR graph for sampling.
#[pyclass(module = "frx._core", frozen)]
struct Graph {
    inner: CoreGraph,
}

#[pymethods]
impl Graph {
    #[new]
    #[pyo3(signature = (src, dst, weight=None, edge_type=None, num_nodes=None, directed=false))]
    fn new<'py>(
        py: Python<'py>,
        src: PyReadonlyArray1<'py, i64>,
        dst: PyReadonlyArray1<'py, i64>,
        weight: Option<PyReadonlyArray1<'py, f64>>,
        edge_type: Option<PyReadonlyArray1<'py, i32>>,
        num_nodes: Option<usize>,
        directed: bool,
    ) -> PyResult<Self> {
        let (s, d) = (slice(&src, "src")?, slice(&dst, "dst")?);
        let w = weight.as_ref().map(|w| slice(w, "weight")).transpose()?;
        let t = edge_type
            .as_ref()
            .map(|t| slice(t, "edge_type"))
            .transpose()?;
        let inner = py
            .detach(|| CoreGraph::from_edges(s, d, w, t, num_nodes, directed))
            .map_err(err)?;
        Ok(Graph { inner })
    }

    #[getter]
    fn num_nodes(&self) -> usize {
        self.inner.num_nodes()
    }
    #[getter]
    fn num_edges(&self) -> usize {
        self.inner.num_edges()
    }
    #[getter]
    fn directed(&self) -> bool {
        self.inner.directed()
    }

    fn csr<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u32>>) {
        (
            PyArray1::from_slice(py, self.inner.indptr()),
            PyArray1::from_slice(py, self.inner.indices()),
        )
    }

    #[pyo3(signature = (starts, length, seed=0))]
    fn random_walks<'py>(
        &self,
        py: Python<'py>,
        starts: PyReadonlyArray1<'py, i64>,
        length: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let st = slice(&starts, "starts")?;
        let walks = py
            .detach(|| self.inner.random_walks(st, length, seed))
            .map_err(err)?;
        Ok(walks
            .into_pyarray(py)
            .reshape([st.len(), length + 1])?
            .into_any())
    }

    /// -> (sample, hop, src, dst, edge_type)
    #[pyo3(signature = (starts, fanouts, seed=0))]
    fn khop<'py>(
        &self,
        py: Python<'py>,
        starts: PyReadonlyArray1<'py, i64>,
        fanouts: Vec<usize>,
        seed: u64,
    ) -> PyResult<KhopArrays<'py>> {
        let st = slice(&starts, "starts")?;
        let k = py
            .detach(|| self.inner.khop(st, &fanouts, seed))
            .map_err(err)?;
        Ok((
            k.sample.into_pyarray(py),
            k.hop.into_pyarray(py),
            k.src.into_pyarray(py),
            k.dst.into_pyarray(py),
            k.edge_type.into_pyarray(py),
        ))
    }

    #[pyo3(signature = (starts, k, seed=0))]
    fn subgraphs<'py>(
        &self,
        py: Python<'py>,
        starts: PyReadonlyArray1<'py, i64>,
        k: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let st = slice(&starts, "starts")?;
        let sets = py
            .detach(|| self.inner.subgraphs(st, k, seed))
            .map_err(err)?;
        Ok(sets.into_pyarray(py).reshape([st.len(), k])?.into_any())
    }
}

/// Number of threads the kernels use (rayon's global pool; set RAYON_NUM_THREADS to change).
#[pyfunction]
fn num_threads() -> usize {
    rayon::current_num_threads()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(normalize, m)?)?;
    m.add_function(wrap_pyfunction!(exact_dedup, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(features, m)?)?;
    m.add_function(wrap_pyfunction!(feature_scores, m)?)?;
    m.add_function(wrap_pyfunction!(feature_names, m)?)?;
    m.add_function(wrap_pyfunction!(judge_rules, m)?)?;
    m.add_class::<ExactIndex>()?;
    m.add_class::<NearIndex>()?;
    m.add_class::<Matcher>()?;
    m.add_class::<Judge>()?;
    m.add_class::<Graph>()?;
    Ok(())
}
