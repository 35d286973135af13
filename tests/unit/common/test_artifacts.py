import pytest

from i2v_common.artifacts import ArtifactError, ArtifactMissing, FileStore, FsspecStore, open_store


@pytest.mark.parametrize(
    "location_kind", [pytest.param("path", id="plain-path"), pytest.param("file_url", id="file-url")]
)
def test_a_file_store_writes_atomically_and_reads_back(tmp_path, location_kind):
    location = str(tmp_path) if location_kind == "path" else tmp_path.as_uri()
    store = open_store(location)
    assert isinstance(store, FileStore)
    uri = store.put("jobs/abc/input.png", b"\x89PNG data")
    assert uri == store.uri_for("jobs/abc/input.png")
    assert store.get(uri) == b"\x89PNG data"
    store.put("jobs/abc/input.png", b"replaced")
    assert store.get(uri) == b"replaced"
    assert not [p for p in (tmp_path / "jobs" / "abc").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../escape", id="parent-escape"),
        pytest.param("/abs", id="absolute"),
        pytest.param("a/../../b", id="dot-dot-inside"),
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
        pytest.param("x/" * 5 + "y", id="too-deep"),
        pytest.param(".hidden", id="hidden-dotfile"),
    ],
)
def test_unsafe_artifact_names_are_refused(tmp_path, name):
    with pytest.raises(ArtifactError, match="not allowed"):
        FileStore(tmp_path).put(name, b"x")


def test_file_store_refuses_uris_outside_its_root(tmp_path):
    inner = FileStore(tmp_path / "store")
    outside = tmp_path / "secret"
    outside.write_bytes(b"s")
    with pytest.raises(ArtifactError, match="outside this store"):
        inner.get(outside.as_uri())
    with pytest.raises(ArtifactError, match="not in this store"):
        inner.get("http://example.invalid/x")
    with pytest.raises(ArtifactError, match="cannot read"):
        inner.get(inner.uri_for("missing"))


@pytest.mark.parametrize(
    "directory",
    [pytest.param("a+b", id="plus"), pytest.param("with space", id="space"), pytest.param("é", id="unicode")],
)
def test_a_file_store_under_a_directory_name_that_uris_encode_reads_its_own_uris(tmp_path, directory):
    store = FileStore(tmp_path / directory / "store")
    uri = store.put("cluster/store-id", b"id")
    assert "%" in uri and store.get(uri) == b"id" and store.size(uri) == 2


@pytest.mark.parametrize(
    ("suffix", "refusal"),
    [
        pytest.param("/%2e%2e/secret", "outside this store", id="encoded-dotdot"),
        pytest.param("/..%2Fsecret", "outside this store", id="encoded-slash"),
        pytest.param("/x%00y", "not a file path", id="encoded-nul"),
    ],
)
def test_encoded_escapes_from_a_file_store_are_refused(tmp_path, suffix, refusal):
    (tmp_path / "secret").write_bytes(b"s")
    store = FileStore(tmp_path / "store")
    with pytest.raises(ArtifactError, match=refusal):
        store.get(store.root_url + suffix)


def test_an_fsspec_store_round_trips_on_the_memory_filesystem():
    store = open_store("memory://i2v-test-store")
    assert isinstance(store, FsspecStore)
    uri = store.put("jobs/j1/out.mp4", b"video")
    assert uri == "memory://i2v-test-store/jobs/j1/out.mp4"
    assert store.get(uri) == b"video"
    with pytest.raises(ArtifactError, match="does not exist"):
        store.get(store.uri_for("jobs/j1/none.mp4"))
    with pytest.raises(ArtifactError, match="not in this store"):
        store.get("memory://elsewhere/x")


def test_unknown_scheme_is_reported():
    with pytest.raises(ArtifactError, match="not usable here"):
        open_store("nosuchscheme-xyz://bucket")


@pytest.mark.parametrize(
    "location",
    [pytest.param("dir", id="file-store"), pytest.param("memory://i2v-test-delete", id="fsspec-memory")],
)
def test_delete_removes_and_a_missing_artifact_is_not_an_error(tmp_path, location):
    store = open_store(str(tmp_path) if location == "dir" else location)
    video = store.put("jobs/j1/attempt-1.mp4", b"video")
    image = store.put("jobs/j1/input.png", b"image")
    store.delete(video)
    with pytest.raises(ArtifactError):
        store.get(video)
    assert store.get(image) == b"image"
    store.delete(video)  # already gone
    store.delete(image)
    if location == "dir":
        assert not (tmp_path / "jobs" / "j1").exists()  # the job's folder went with its last file
        assert (tmp_path / "jobs").is_dir()
    with pytest.raises(ArtifactError, match="not in this store"):
        store.delete("memory://elsewhere/x" if location == "dir" else "file:///etc/passwd")


@pytest.mark.parametrize(
    "kind", [pytest.param("file", id="file-store"), pytest.param("memory", id="fsspec-memory")]
)
def test_create_writes_only_when_absent_and_missing_is_its_own_error(tmp_path, kind):
    store = FileStore(tmp_path) if kind == "file" else open_store(f"memory://i2v-create-{tmp_path.name}")
    with pytest.raises(ArtifactMissing):
        store.get(store.uri_for("cluster/store-id"))
    assert store.create("cluster/store-id", b"first")
    assert not store.create("cluster/store-id", b"second")
    assert store.get(store.uri_for("cluster/store-id")) == b"first"
    if kind == "file":
        assert not [p for p in (tmp_path / "cluster").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "kind", [pytest.param("file", id="file-store"), pytest.param("fsspec", id="fsspec-memory")]
)
@pytest.mark.parametrize(
    ("offset", "length", "want"),
    [
        pytest.param(0, 4, b"0123", id="head"),
        pytest.param(3, 4, b"3456", id="middle"),
        pytest.param(8, 4, b"89", id="short-at-the-end"),
        pytest.param(10, 4, b"", id="at-the-end"),
        pytest.param(12, 4, b"", id="past-the-end"),
        pytest.param(0, 100, b"0123456789", id="all"),
    ],
)
def test_read_range_reads_only_the_bytes_asked_for(tmp_path, kind, offset, length, want):
    location = str(tmp_path) if kind == "file" else f"memory://range-{tmp_path.name}"
    store = open_store(location)
    uri = store.put("jobs/j/out.mp4", b"0123456789")
    assert store.size(uri) == 10
    assert store.read_range(uri, offset, length) == want


@pytest.mark.parametrize(
    "kind", [pytest.param("file", id="file-store"), pytest.param("fsspec", id="fsspec-memory")]
)
def test_size_and_read_range_of_a_missing_artifact_say_so(tmp_path, kind):
    store = open_store(str(tmp_path) if kind == "file" else f"memory://missing-{tmp_path.name}")
    uri = store.uri_for("jobs/j/none.mp4")
    with pytest.raises(ArtifactMissing, match="does not exist"):
        store.size(uri)
    with pytest.raises(ArtifactMissing, match="does not exist"):
        store.read_range(uri, 0, 10)
    with pytest.raises(ArtifactError, match="not in this store"):
        store.read_range("memory://elsewhere/x" if kind == "fsspec" else "http://x.invalid/y", 0, 1)
