"""Import-box lines -> sources; folder expansion."""

from __future__ import annotations


import pytest

from invokeai_model_install.errors import SourceError
from invokeai_model_install.net.sources import (
    HubSource,
    LocalDiffusersSource,
    LocalFileSource,
    LocalFolderSource,
    UrlSource,
    expand_folder,
    parse_import_text,
    parse_source,
)

SHA = "ab" * 32


@pytest.mark.parametrize(
    "line, expected",
    [
        ("stabilityai/sd-vae-ft-mse", HubSource("stabilityai/sd-vae-ft-mse")),
        ("  owner/name:vae  ", HubSource("owner/name", subfolder="vae")),
        ("owner/name@v1.0", HubSource("owner/name", revision="v1.0")),
        ("owner/name:unet@fp16", HubSource("owner/name", subfolder="unet", revision="fp16")),
        ("owner/name@dev:text_encoder", HubSource("owner/name", subfolder="text_encoder", revision="dev")),
        ("https://huggingface.co/owner/name", HubSource("owner/name")),
        ("https://huggingface.co/owner/name/blob/main/v1-5.safetensors", HubSource("owner/name", revision="main", path_in_repo="v1-5.safetensors")),
        ("https://huggingface.co/owner/name/resolve/abc123/sub/dir/m.ckpt", HubSource("owner/name", revision="abc123", path_in_repo="sub/dir/m.ckpt")),
        ("https://huggingface.co/owner/name/tree/main/vae", HubSource("owner/name", revision="main", subfolder="vae")),
        ("https://example.com/models/m.safetensors", UrlSource("https://example.com/models/m.safetensors")),
        ("https://civitai.com/api/download/models/12345", UrlSource("https://civitai.com/api/download/models/12345")),
        (f"http://example.com/a.ckpt#sha256={SHA.upper()}", UrlSource("http://example.com/a.ckpt", sha256=SHA)),
        ("https://example.com/x.pt?token=1", UrlSource("https://example.com/x.pt?token=1")),
    ],
)
def test_parse_source(line, expected):
    assert parse_source(line) == expected


def test_mirror_endpoint_urls_are_hub_urls():
    env = {"HF_ENDPOINT": "http://mirror.local:8080"}
    assert parse_source("http://mirror.local:8080/o/n/blob/main/x.safetensors", environ=env) == HubSource("o/n", revision="main", path_in_repo="x.safetensors")
    assert isinstance(parse_source("http://mirror.local:8080/o/n/blob/main/x.safetensors", environ={}), UrlSource)


@pytest.mark.parametrize(
    "line, words",
    [
        ("", "empty"),
        ("https://example.com/page.html", "does not point to a model"),
        ("https://example.com/a.ckpt#sha256=123", "sha256"),
        ("ftp://example.com/a.ckpt", "only http"),
        ("/no/such/file.ckpt", "no such file"),
        ("~/no-such-dir-xyz/model.safetensors", "no such file"),
        ("just some words", "not a URL"),
        ("owner/name:a:b", "at most one"),
        ("https://huggingface.co/owner/name/discussions/3", "hub URL"),
    ],
)
def test_bad_lines_name_the_line(line, words):
    with pytest.raises(SourceError) as err:
        parse_source(line)
    assert words in str(err.value)
    if line.strip():
        assert line.split("#")[0].split(":")[0][:10] in str(err.value) or line[:10] in str(err.value)


def test_local_kinds(tmp_path, monkeypatch):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert parse_source(str(model)) == LocalFileSource(model)
    assert parse_source(str(tmp_path / "pipe")) == LocalDiffusersSource(tmp_path / "pipe")
    assert parse_source(str(tmp_path / "vae")) == LocalDiffusersSource(tmp_path / "vae")
    assert parse_source(str(tmp_path / "stuff")) == LocalFolderSource(tmp_path / "stuff")
    with pytest.raises(SourceError, match="not a model file"):
        parse_source(str(tmp_path / "notes.txt"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_source("~/m.safetensors") == LocalFileSource(model)


def test_labels_hide_url_secrets():
    assert parse_source("owner/name:vae@dev").label == "owner/name:vae@dev"
    assert "secret" not in parse_source("https://example.com/x.pt?token=secret&v=1").label
    assert parse_source("https://example.com/x.pt?token=secret&v=1").label.endswith("token=***&v=1")


def test_parse_import_text(tmp_path):
    spaced = tmp_path / "my models" / "a b.ckpt"
    spaced.parent.mkdir()
    spaced.write_bytes(b"x")
    text = f"""
    # a comment
    owner/one   owner/two:vae   # trailing comment
    https://example.com/m.safetensors#sha256={SHA}

    {spaced}
    not-a-thing owner/three
    """
    found, errors = parse_import_text(text)
    assert found == [
        HubSource("owner/one"),
        HubSource("owner/two", subfolder="vae"),
        UrlSource("https://example.com/m.safetensors", sha256=SHA),
        LocalFileSource(spaced),
        HubSource("owner/three"),
    ]
    assert len(errors) == 1 and "not-a-thing" in str(errors[0])


def test_expand_folder(tmp_path):
    def touch(rel):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")

    for rel in [
        "a.ckpt", "a.yaml", "a.vae.pt", "lone.vae.pt", "b.safetensors", "notes.txt",
        "sub/deep/c.pt", "sub/d.bin",
        "pipe/model_index.json", "pipe/unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
        ".partial/abc.part", ".hidden.safetensors",
    ]:
        touch(rel)
    got = expand_folder(tmp_path)
    assert got == sorted([
        LocalFileSource(tmp_path / "a.ckpt"),
        LocalFileSource(tmp_path / "b.safetensors"),
        LocalFileSource(tmp_path / "lone.vae.pt"),
        LocalDiffusersSource(tmp_path / "pipe"),
        LocalFileSource(tmp_path / "sub" / "d.bin"),
        LocalFileSource(tmp_path / "sub" / "deep" / "c.pt"),
        LocalDiffusersSource(tmp_path / "vae"),
    ], key=lambda s: str(s.path))
    assert expand_folder(tmp_path / "pipe") == [LocalDiffusersSource(tmp_path / "pipe")]
