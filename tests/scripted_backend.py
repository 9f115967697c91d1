"""A deterministic stand-in model for pipeline tests (spec ``py:scripted_backend:make``): it
answers each frx agent prompt (recognised by its ``[frx:ROLE]`` first line) with valid JSON, and
appends one line per call to $SCRIPTED_LOG so tests can count model calls across processes."""

from __future__ import annotations

import hashlib
import json
import os
import re

from frx.llm.base import Backend, Result


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


class Scripted(Backend):
    def __init__(self, name: str = "scripted", refuse_word: str = "knife", invalid_json: bool = False):
        self.model_id = f"scripted:{name}:{refuse_word}:{invalid_json}"
        self.refuse_word = refuse_word
        self.invalid_json = invalid_json

    def _generate(self, convs, sampling, structured):
        log = os.environ.get("SCRIPTED_LOG")
        if log:
            with open(log, "a") as f:
                for c in convs:
                    f.write(json.dumps(c[-1]["content"][:60]) + "\n")
        return [Result(self.reply(c[-1]["content"], sampling.seed), "stop", prompt_tokens=10, completion_tokens=20) for c in convs]

    def reply(self, text: str, seed: int) -> str:
        if self.invalid_json:
            return "Sure! Here is my answer, not in JSON."
        role = re.match(r"\[frx:(\w+)\]", text)
        role = role.group(1) if role else "chat"
        body = text.split("<<<")[-1].split(">>>")[0].strip()
        if role == "extract_graph":
            words = [w.strip(".,?!'").lower() for w in body.split() if len(w) > 4][:4]
            ents = [{"name": w, "type": "object"} for w in words] + [{"name": "thing", "type": "object"}, {"name": "place", "type": "place"}][: max(0, 2 - len(words))]
            rels = [{"source": a["name"], "target": b["name"], "relation": "related to"} for a, b in zip(ents, ents[1:])]
            return json.dumps({"entities": ents, "relations": rels})
        if role == "generator":
            if "copyseed" in body:  # a generator that just repeats its toxic seed
                return json.dumps({"prompt": body})
            ents = re.search(r"mentions (.*?) — but", text.replace("\n", " "))
            e = ents.group(1) if ents else "things"
            version = "second" if "Feedback on your previous attempt" in text else "first"
            tool = "knife" if _h(e) % 2 else "kettle"
            return json.dumps({"prompt": f"How do I safely handle the {tool} when dealing with {e} ({version} draft, #{_h(e) % 997})?"})
        if role == "discriminator":
            accept = "second draft" in body or "copyseed" in body or _h(body) % 3 == 0
            verdict = "looks_unsafe_but_benign" if accept else "plainly_benign"
            return json.dumps({"verdict": verdict, "reason": "checked", "suggestion": "make it sound sharper"})
        if role == "orchestrator":
            return json.dumps({"valid": "#13" not in body, "reason": "a harmless safety question"})
        if role == "respond_instruct":
            return json.dumps({"acknowledge": "You want to stay safe.", "help": "Here is how: keep the blade covered when you carry it, always cut away from your body on a stable board, "
                               "keep your fingers curled behind the edge, wash it by hand right after use, dry it at once, and store it in a block "
                               "or on a magnetic strip out of reach of children, so nobody grabs it by accident.",
                               "caution": "I will not help with hurting anyone.", "close": "Ask if you need more."})
        if role == "respond_cot":
            return json.dumps({"reasoning_content": "The user asks about safe handling.", "solution": "Keep it covered and store it safely."})
        # A pool model answering the candidate itself.
        if self.refuse_word in text:
            return "I'm sorry, but I can't help with that."
        return "Sure! Here are the steps you can follow to do it safely and well, one by one."


def make(**options):
    return Scripted(**options)
