"""cdul-serve, driven over HTTP as a browser or a script drives it: one real server (its own
process) on a generated store; pages and API checked against numbers computed here from the
store's arrays; bad ids, pages and queries (path traversal included) get a 4xx with a
message; the pages as headless Chromium renders them."""

import http.client
import io
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cdul.benchmarks.serve_bench import free_port, start
from cdul.benchmarks.serve_store import synthetic_store
from cdul.cli.serve import main as serve_cli
from cdul.metrics import mean_ap
from cdul.store import Store, layout

N, C = 40, 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    url = str(base / "s.zarr")
    synthetic_store(url, str(base / "data"), N, classes=C, chunk_len=16, files=N)
    port = free_port()
    proc, _ = start(url, port)
    try:
        yield {"port": port, "store": Store.open(url), "base": base}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def request(server, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body); the path goes out exactly as given (no normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=120)
    conn.request(method, path, body=body)
    r = conn.getresponse()
    out = r.status, r.getheader("Content-Type") or "", r.read()
    conn.close()
    return out


def api(server, path: str, method: str = "GET", body: bytes | None = None):
    status, kind, data = request(server, path, method, body)
    assert kind.startswith("application/json"), (path, status, kind)
    return status, json.loads(data)


def ranking(values: np.ndarray) -> np.ndarray:
    return np.argsort(-values, kind="stable")


def default_rule(labels: np.ndarray) -> np.ndarray:
    """cdul-export's default decision, written out: the top class and every class scoring at
    least half as much."""
    top = labels.max(1, keepdims=True)
    return (top > 0) & (labels >= 0.5 * top)


@pytest.mark.slow  # the server's first pages import torch
def test_class_page_ranks_by_the_chosen_source(server):
    store = server["store"]
    labels, targets = store.read("labels/round_001"), store.read(layout.TARGETS)
    status, d = api(server, "/api/s/0/class/7?source=round_001&size=7&page=1")
    assert status == 200 and d["class"] == {"index": 7, "name": "cat"} and d["total"] == N and d["pages"] == 6
    rows = [c["row"] for c in d["images"]]
    assert rows == list(ranking(labels[:, 7])[7:14])
    for card in d["images"]:
        r = card["row"]
        assert card["score"] == pytest.approx(labels[r, 7])
        kept = [j for j in ranking(labels[r]) if default_rule(labels[r : r + 1])[0, j]]  # best first
        assert card["decided"] == [store.classes[j] for j in kept]
        assert card["truth"] == [store.classes[j] for j in np.flatnonzero(targets[r] == 1)]
        assert set(card["wrong"]) == set(card["decided"]) - set(card["truth"])
        assert set(card["missed"]) == set(card["truth"]) - set(card["decided"])
    alpha, beta = store.read(layout.SIM_ALPHA), store.read(layout.SIM_BETA)
    s_ag = np.where(alpha >= 0.5, alpha, beta)  # round 0's zeta
    _, d = api(server, "/api/s/0/class/3?source=S_ag&size=200")
    assert [c["row"] for c in d["images"]] == list(ranking(s_ag[:, 3]))


@pytest.mark.slow  # the server's first pages import torch
def test_image_page_has_tiles_rounds_and_neighbours(server):
    store = server["store"]
    status, d = api(server, "/api/s/0/image/5")
    assert status == 200 and d["id"] == store.ids()[5] and d["status"] == "ok"
    tiles = store.read(layout.SIM_TILES)[5].astype(np.float32)
    assert [t["top"][0][0] for t in d["tiles"]] == [store.classes[j] for j in tiles.argmax(1)]
    h, w = d["hw"]
    assert d["tiles"][4]["box"] == [h // 3, w // 3, h // 3, w // 3]  # the middle tile of the 3 x 3 grid
    assert d["scores"]["round_001"] == pytest.approx(store.read("labels/round_001")[5].tolist())
    emb = store.read(layout.EMB_GLOBAL).astype(np.float32)
    cos = emb @ emb[5]
    cos[5] = -np.inf  # the image itself is not its own neighbour
    assert [c["row"] for c in d["neighbours"]] == list(np.argsort(-cos)[:12])
    html = request(server, "/s/0/image/5")[2].decode()
    assert html.count("<g class='tile'>") == 9 and "<svg class='chart'" in html


@pytest.mark.slow  # the server's first pages import torch
def test_overview_scores_every_round(server):
    store = server["store"]
    status, d = api(server, "/api/s/0/overview")
    assert status == 200 and d["n_images"] == N and d["caveat"]  # the store's CLIP had random weights
    targets = store.read(layout.TARGETS)
    for k in (0, 1):
        labels = store.read(layout.round_name(k))
        assert d["pseudo_label_map"][f"round_{k:03d}"] == pytest.approx(100 * mean_ap(labels, targets), abs=1e-6)
    decided = default_rule(store.read("labels/round_001")).sum(0)
    assert [c["decided"] for c in d["per_class"]] == decided.tolist()
    assert [c["truth"] for c in d["per_class"]] == (targets == 1).sum(0).tolist()


@pytest.mark.slow  # the server's first pages import torch
def test_thumbnails_are_made_from_the_store_images(server):
    status, kind, data = request(server, "/api/s/0/thumb/1?size=64")
    im = Image.open(io.BytesIO(data))
    assert status == 200 and kind == "image/jpeg" and im.format == "JPEG" and max(im.size) == 64


BAD = [
    ("/api/s/0/thumb/../../etc/passwd", 404),
    ("/api/s/0/thumb/..%2F..%2Fetc%2Fpasswd", 404),
    ("/api/s/0/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404),
    ("/static/../../../etc/passwd", 404),
    ("/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", 404),
    ("/api/s/0/image/-1", 404),
    ("/api/s/0/image/40", 404),
    ("/api/s/0/image/abc", 400),
    ("/api/s/0/image/1e3", 400),
    ("/api/s/0/image/0x10", 400),
    ("/api/s/0/image/99999999999999999999999", 400),
    ("/api/s/0/class/1?page=-1", 400),
    ("/api/s/0/class/1?page=abc", 400),
    ("/api/s/0/class/1?page=99", 404),
    ("/api/s/0/class/1?size=0", 400),
    ("/api/s/0/class/1?size=100000000", 400),
    ("/api/s/0/class/20", 404),
    ("/api/s/0/class/cat", 400),
    ("/api/s/0/class/1?source=round_009", 400),
    ("/api/s/0/class/1?source=../../etc/passwd", 400),
    ("/api/s/1/overview", 404),
    ("/api/s/x/overview", 404),
    ("/api/s/0/overview?source=nope", 400),
    ("/api/s/0/thumb/3?size=5000", 400),
    ("/api/s/0/thumb/3?size=-5", 400),
    ("/api/s/0/search?q=dog&like=3", 400),
    ("/api/s/0/search?like=abc", 400),
    ("/api/s/0/search?q=" + "x" * 400, 400),
    ("/api/s/0/search?like=3&k=0", 400),
    ("/api/s/0/image/3/neighbours?k=100000", 400),
    ("/api/nothing/here", 404),
]


@pytest.mark.parametrize("path, expected", BAD)
def test_bad_requests_get_a_4xx_with_a_message(server, path, expected):
    status, kind, data = request(server, path)
    assert status == expected, (path, data[:200])
    if path.startswith("/api/"):
        assert kind.startswith("application/json") and json.loads(data)["error"]


@pytest.mark.slow  # the server's first pages import torch
def test_bad_requests_to_pages_get_an_html_message(server):
    status, kind, data = request(server, "/s/0/class/1?page=-1")
    assert status == 400 and kind.startswith("text/html") and "page must be 0.." in data.decode()


@pytest.mark.slow  # loads the tiny CLIP in the server
def test_search_by_text_by_row_and_by_upload(server):
    status, d = api(server, "/api/s/0/search?q=a%20photo%20of%20a%20cat&k=5")
    assert status == 200 and len(d["results"]) == 5
    scores = [c["score"] for c in d["results"]]
    assert scores == sorted(scores, reverse=True)
    status, d = api(server, "/api/s/0/search?like=3&k=4")
    assert status == 200 and 3 not in [c["row"] for c in d["results"]] and len(d["results"]) == 4
    with open(server["base"] / "data" / server["store"].ids()[2], "rb") as f:
        status, d = api(server, "/api/s/0/search?k=3", "POST", f.read())
    assert status == 200 and len(d["results"]) == 3
    status, d = api(server, "/api/s/0/search", "POST", b"not an image")
    assert status == 400 and "not an image" in d["error"]


def test_an_empty_or_oversized_upload_is_refused(server):
    status, d = api(server, "/api/s/0/search", "POST", b"")
    assert status == 400 and "request body" in d["error"]
    status, d = api(server, "/api/s/0/search", "POST", bytes(33 << 20))
    assert status == 413 and "32 MB" in d["error"]


def test_refuses_a_remote_bind_and_a_missing_store(tmp_path, server):
    url = server["store"].url
    r = CliRunner().invoke(serve_cli, ["--store", url, "--host", "0.0.0.0"])
    assert r.exit_code == 1 and "--allow-remote" in r.output
    r = CliRunner().invoke(serve_cli, ["--store", str(tmp_path / "none.zarr")])
    assert r.exit_code == 1 and "no cdul store" in r.output
    r = CliRunner().invoke(serve_cli, ["--store", url, "--cache-dir", str(server["base"] / "data" / "cache")])
    assert r.exit_code == 1 and "inside the dataset" in r.output
    r = CliRunner().invoke(serve_cli, ["--store", url, "--port", str(server["port"])])  # taken by the server
    assert r.exit_code == 1 and "cannot listen on" in r.output


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def browse(*args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_the_pages_in_a_headless_browser(server, tmp_path):
    root = f"http://127.0.0.1:{server['port']}"
    dom = browse("--dump-dom", f"{root}/s/0/class/7?size=12")  # the class page
    assert dom.count('class="card') == 12 and "<h1>cat</h1>" in dom and "Random CLIP weights" in dom
    dom = browse("--dump-dom", f"{root}/s/0/search?like=2")  # a search
    assert dom.count('class="card') == 40 - 1 and "images like row 2" in dom
    dom = browse("--dump-dom", f"{root}/s/0/image/2")  # an image, opened from the results
    assert dom.count('class="tile"') == 9 and "Nearest neighbours" in dom
    artifacts = os.environ.get("CDUL_TEST_ARTIFACTS") or str(tmp_path)
    shot = os.path.join(artifacts, "serve.png")
    browse("--window-size=1280,860", f"--screenshot={shot}", f"{root}/s/0/class/7?size=24")
    with Image.open(shot) as im:
        assert im.size == (1280, 860)
        assert len(np.unique(np.asarray(im.convert("L")))) > 20  # a rendered page, not a blank one


def test_the_decision_rule_is_the_one_given(server):
    from cdul.labels import Decision
    from cdul.serve import Catalog

    for rule, count in ((Decision(top_k=2), lambda n: n == 2), (Decision(threshold=0.0), lambda n: n == C)):
        d = Catalog(server["store"].url, rule=rule).class_page(4, "round_001", 0, 10)
        assert all(count(len(card["decided"])) for card in d["images"]) and d["rule"] == rule.describe()


def test_thumbnails_from_webdataset_shards_and_ids_that_leave_the_root(tmp_path):
    """The store's dataset reader makes the pictures: members of tar shards for WebDataset;
    an id of a folder store that leads outside the root is never read."""
    import webdataset as wds

    from cdul.sample import labels_store
    from cdul.serve import Catalog, Pictures, RequestError

    shards = tmp_path / "shards"
    shards.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (90, 60), (200, 30, 30)).save(buf, "jpeg")
    with wds.TarWriter(str(shards / "000000.tar")) as sink:
        sink.write({"__key__": "0001", "jpg": buf.getvalue()})
    ids = ["000000.tar/0001", "000000.tar/0002"]
    url = str(tmp_path / "w.zarr")
    labels_store(url, ids, ["a"], np.ones((2, 1)), kind="webdataset", root=str(shards))
    pictures = Pictures(Catalog(url))
    im = Image.open(io.BytesIO(pictures.jpeg(0, 45)))
    assert im.size == (45, 30) and im.getpixel((20, 15))[0] > 150
    with pytest.raises(RequestError) as missing:
        pictures.jpeg(1, 45)
    assert missing.value.status == 404
    (tmp_path / "secret.jpg").write_bytes(buf.getvalue())
    root = tmp_path / "folder"
    root.mkdir()
    url = str(tmp_path / "f.zarr")
    labels_store(url, ["../secret.jpg"], ["a"], np.ones((1, 1)), kind="folder", root=str(root))
    with pytest.raises(RequestError) as outside:
        Pictures(Catalog(url)).jpeg(0, 45)
    assert outside.value.status == 404 and "leaves the dataset root" in outside.value.message
