"""The LLM errors are one family under NeuronscopeError, importable from every place code imports them from."""

from __future__ import annotations

import pytest

import neuronscope.llm as llm
import neuronscope.llm.client as client
import neuronscope.llm.errors as errors
import neuronscope.llm.parse as parse
from neuronscope.errors import LLMError, NeuronscopeError

NAMES = ("LLMHTTPError", "LLMRateLimited", "LLMTimeout", "LLMConnectionError", "LLMResponseError",
         "LLMLogprobsUnavailable")


@pytest.mark.parametrize("name", NAMES)
def test_every_llm_error_is_a_neuronscope_error(name):
    cls = getattr(errors, name)
    assert issubclass(cls, LLMError)
    assert issubclass(cls, NeuronscopeError)
    assert getattr(llm, name) is cls  # the package's public name is the same class


def test_old_import_paths_still_work():
    assert llm.LLMError is errors.LLMError is LLMError
    assert parse.LLMResponseError is errors.LLMResponseError
    assert parse.LLMLogprobsUnavailable is errors.LLMLogprobsUnavailable
    for name in ("LLMHTTPError", "LLMRateLimited", "LLMTimeout", "LLMConnectionError", "retry_after_seconds"):
        assert getattr(client, name) is getattr(errors, name)
    assert client.LLMConfig is llm.LLMConfig
    assert client.normalize_base_url is llm.normalize_base_url


def test_subclass_relations_callers_rely_on():
    # A 429 is an HTTP error; missing logprobs are an unusable response (the simulator falls back on it).
    assert issubclass(errors.LLMRateLimited, errors.LLMHTTPError)
    assert issubclass(errors.LLMLogprobsUnavailable, errors.LLMResponseError)
    assert not issubclass(errors.LLMTimeout, errors.LLMHTTPError)


def test_retryable_statuses():
    assert [s for s in (200, 400, 401, 403, 404, 408, 422, 429, 500, 502, 503, 504) if errors.retryable_status(s)] \
        == [408, 429, 500, 502, 503, 504]


def test_error_messages_name_url_status_and_attempts():
    e = errors.LLMHTTPError("http://h/v1/chat/completions", 503, "overloaded", hint=" (busy)")
    assert str(e) == "http://h/v1/chat/completions answered HTTP 503: overloaded (busy)"
    e.attempts = 3
    assert str(e).endswith("(gave up after 3 attempts)")
    assert str(errors.LLMTimeout("http://h/v1", 2.5)) == "request to http://h/v1 timed out (timeout_s=2.5)"
