"""Shared pieces of the augmentation tests: a workspace with a few English and Chinese samples, and
a provider pointing at the fake OpenAI server (the `fake` fixture in conftest.py) with a recognisable key."""
from __future__ import annotations

FAKE_KEY_ENV = "STUDIO_TEST_LLM_KEY"
FAKE_KEY = "sk-test-DO-NOT-STORE-7f3a9c1e5b"
FAST = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05}  # client options: retries without long sleeps


def add_samples(ws, items):
    from curation import samples, store

    with ws.transaction():
        return store.insert_samples(ws.con, [samples.chat(u, a) for u, a in items])


def configure(ws, fake, monkeypatch, **kw):
    from curation.augment.providers import Provider, add_provider

    monkeypatch.setenv(FAKE_KEY_ENV, FAKE_KEY)
    fields = dict(name="fake", base_url=fake.base_url, model="fake-model", api_key_env=FAKE_KEY_ENV,
                  concurrency=4, input_usd_per_mtok=2.0, output_usd_per_mtok=8.0, timeout_s=5.0, max_attempts=3)
    fields.update(kw)
    add_provider(ws, Provider(**fields), replace=True)


SAMPLES = [
    ("What is the capital of France?", "Paris."),
    ("Write a haiku about rain.", "Soft rain on the roof / the gutters hum their one note / the cat does not care"),
    ("用一句话解释什么是机器学习。", "机器学习是让计算机从数据中自动学习规律的方法。"),
]
