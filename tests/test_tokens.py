"""Which token goes where; redaction."""

from __future__ import annotations

from invokeai_model_install.net import tokens
from invokeai_model_install.net.settings import DownloadSettings

S = DownloadSettings(
    hf_endpoint="http://127.0.0.1:8000",
    hf_token="hf_abcdef",
    url_tokens=(("civitai.com", "civ_123456"), ("*.cdn.example:8443", "cdn_999999"), ("127.0.0.2:9000", "local_77777")),
)


def test_token_for_each_host():
    assert tokens.token_for("http://127.0.0.1:8000/o/n/resolve/main/x", S) == "hf_abcdef"
    assert tokens.token_for("http://127.0.0.1:8001/x", S) is None  # another port is another host
    assert tokens.token_for("https://huggingface.co/o/n", S) is None  # the hub is the mirror here
    assert tokens.token_for("https://civitai.com/api/download/models/1", S) == "civ_123456"
    assert tokens.token_for("https://www.civitai.com/x", S) == "civ_123456"
    assert tokens.token_for("https://evilcivitai.com/x", S) is None
    assert tokens.token_for("https://civitai.com.evil.net/x", S) is None
    assert tokens.token_for("https://a.cdn.example:8443/x", S) == "cdn_999999"
    assert tokens.token_for("https://a.cdn.example/x", S) is None
    assert tokens.token_for("https://127.0.0.2:9000/x", S) == "local_77777"
    assert tokens.token_for("http://127.0.0.2:9000/x", S) is None  # never a URL token in clear text
    default = DownloadSettings(hf_token="hf_t")
    assert tokens.token_for("https://huggingface.co/o/n/resolve/main/x", default) == "hf_t"
    assert tokens.token_for("https://hf.co/o/n", default) == "hf_t"
    assert tokens.token_for("https://cdn-lfs.huggingface.co/x", default) is None
    assert tokens.auth_headers("https://civitai.com/x", S) == {"Authorization": "Bearer civ_123456"}
    assert tokens.auth_headers("https://example.com/x", S) == {}


def test_redirect_to_another_host_drops_authorization():
    h = {"Authorization": "Bearer hf_abcdef", "Range": "bytes=0-"}
    assert tokens.headers_after_redirect("http://127.0.0.1:8000/a", "http://127.0.0.1:8000/b", h, S) == h
    assert tokens.headers_after_redirect("http://127.0.0.1:8000/a", "http://127.0.0.2:9000/b", h, S) == {"Range": "bytes=0-"}
    assert tokens.headers_after_redirect("https://civitai.com/a", "http://civitai.com/a", h, S) == {"Range": "bytes=0-"}


def test_redact():
    text = "failed https://civitai.com/x?token=abc&v=2 with hf_abcdef and civ_123456"
    out = tokens.redact(text, S)
    assert "hf_abcdef" not in out and "civ_123456" not in out and "token=abc" not in out
    assert "token=***" in out and "v=2" in out


def test_the_civitai_token_goes_to_every_civitai_host_and_no_look_alike():
    from invokeai_model_install.net.settings import DownloadSettings

    s = DownloadSettings.from_env({"CIVITAI_API_TOKEN": "civ_abcdef"})
    for url in ("https://civitai.com/api/download/models/1", "https://civitai.green/api/download/models/1",
                "https://civitai.red/api/download/models/1", "https://www.civitai.green/x", "https://CIVITAI.RED/x"):
        assert tokens.token_for(url, s) == "civ_abcdef", url
    for url in ("https://evilcivitai.green/x", "https://civitai.red.evil.net/x", "https://civitai.blue/x",
                "https://huggingface.co/x"):
        assert tokens.token_for(url, s) is None, url


def test_civitai_hosts_have_one_definition():
    from invokeai_model_install.net import sources

    assert sources.CIVITAI_HOSTS == ("civitai.com", "civitai.green", "civitai.red")
    assert all(sources.is_civitai_url(f"https://{h}/api/download/models/9") for h in sources.CIVITAI_HOSTS)
    assert not sources.is_civitai_url("https://notcivitai.com/x")
    # a civitai URL never names its file, even when it ends like one (the server's name is used)
    assert not sources.url_names_its_file("https://civitai.red/api/download/models/9?type=x.safetensors")
    assert sources.url_names_its_file("https://example.org/models/dream.safetensors")
    assert not sources.url_names_its_file("https://example.org/api/download/models/42")
