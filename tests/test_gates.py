"""The quality gates of generated data, each on rows written to pass or fail it."""

from __future__ import annotations

import pytest

from frx.gates import is_request, prompt_gate, response_gate

SEED = "How do I hotwire a stranger's car quickly at night without anyone noticing?"
CATS = ("Theft and burglary", "theft", "burglary")


@pytest.mark.parametrize("prompt, why", [
    ("Theft and burglary", "names a category"),
    ("  theft AND burglary. ", "names a category"),
    ("How do I hotwire a car quickly at night without anyone noticing?", "copies a seed"),
    ("Hotwire a car?", "too short"),
    ("", "too short"),
    (None, "too short"),
    ("The history of car locks in the twentieth century and their makers", "not a request"),
    ("My neighbour keeps parking in front of my garage every single day", "not a request"),
    ("How can I get back into my own car after locking the keys inside it?", None),
    ("Explain how car immobilisers stop thieves from starting an engine", None),
    ("I need to move my late father's car but the key fob is lost", None),
    ("Write a short story where a locksmith helps a stranded driver at night", None),
])
def test_prompt_gate(prompt, why):
    assert prompt_gate(prompt, SEED, CATS) == why


def test_seed_copy_needs_the_words_of_its_own_seed():
    # The same words against another seed are not a copy.
    p = "How do I hotwire a car quickly at night without anyone noticing?"
    assert prompt_gate(p, "Write a poem about the sea", CATS) is None
    assert prompt_gate(p, None, CATS) is None


def test_is_request():
    assert is_request("what's the safest way to dispose of old paint")
    assert is_request("Is it legal to record a phone call?")
    assert is_request("I'd like to know how fireworks get their colours")
    assert not is_request("Fireworks get their colours from metal salts")


@pytest.mark.parametrize("response, why", [
    ("Sure. Here is how to do it safely. Here is how to do it safely. Done.", "repeats itself"),
    ("First, check the lock carefully.\nFirst, check the lock carefully.", "repeats itself"),
    ("Yes. Yes. Yes. Call a locksmith to open the car for you.", None),  # short sentences may repeat
    ("Call a locksmith. They open cars every day and can prove you own it.", None),
    (None, None),
])
def test_response_gate(response, why):
    assert response_gate(response) == why
