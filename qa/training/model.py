"""The cross-encoder and its loss.

All six layers of the bundled all-MiniLM-L6-v2 (word embeddings frozen) score (question, sentence [SEP]
title) pairs, and mark the short answer's first and last word piece (`build_encoder`). `batch_loss` is the
listwise loss of a batch of groups (`qa.training.groups`) plus the span loss on each answering sentence.
`model_weights` reads an exported model's int8 weights back as float, so that a run can continue from the
shipped model itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QAError
from ..precise import dequantized
from ..ranker import MODEL_FILE
from .config import BASE_MODEL, TrainConfig
from .groups import Group


def build_encoder(layers: int) -> Any:
    """The base model's first `layers` transformer layers with two heads: a relevance score from the
    mean-pooled pair, and start/end scores per word piece (where the short answer lies)."""
    import torch
    from transformers import AutoModel

    from ..embedding import resolve_model

    class CrossEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(resolve_model(BASE_MODEL))
            self.bert.encoder.layer = self.bert.encoder.layer[:layers]
            self.bert.config.num_hidden_layers = layers
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)
            torch.nn.init.normal_(self.head.weight, std=0.02)
            torch.nn.init.zeros_(self.head.bias)
            self.span = torch.nn.Linear(self.bert.config.hidden_size, 2)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1), self.span(hidden)

    return CrossEncoder()


def model_weights(directory: Path) -> dict[str, Any]:
    """The cross-encoder of an exported model, its int8 weights dequantized back to float (`w = (q - zero) *
    scale`), as a state dict for `build_encoder`. The word embeddings, frozen in training, are the base
    model's; the "no answer" option of the loss, which is not exported, starts at 0. The quantizer keeps each
    Linear's bias under its name; its weight is found as the MatMul whose result that bias is added to."""
    import onnx
    import torch
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(directory / MODEL_FILE)).graph
    except Exception as exc:  # noqa: BLE001 - any unreadable model gets the same answer
        raise QAError(f"cannot start from {directory} ({exc}); give a model directory that `qa train` wrote") from exc
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    weights = {name: value for name, value in values.items()
               if value.dtype == np.float32 and not name.endswith("_scale")}
    for node in graph.node:
        quantized = next((n for n in node.input if n.endswith("_quantized") and n in values), None)
        if quantized is None:
            continue
        base = quantized[:-len("_quantized")]
        weight = dequantized(values, quantized)
        if node.op_type == "Gather":  # an embedding table keeps its name
            weights[base] = weight
        else:
            weights[_added_bias(node, readers, values)[:-len(".bias")] + ".weight"] = weight.T
    weights.pop("bert.embeddings.word_embeddings.weight", None)
    base_model = build_encoder(len({k.split(".")[3] for k in weights if k.startswith("bert.encoder.layer.")}))
    state = base_model.state_dict()
    unknown = sorted(set(weights) - set(state))
    if unknown or any(tuple(state[k].shape) != weights[k].shape for k in weights):
        raise QAError(f"cannot start from {directory}: its cross-encoder is not one `qa train` builds "
                      f"({', '.join(unknown[:3]) or 'other shapes'})")
    state.update({k: torch.tensor(v) for k, v in weights.items()})
    return {**state, "null_option": torch.zeros(1)}


def _added_bias(node: Any, readers: dict[str, list[Any]], values: dict[str, Any]) -> str:
    """The bias initializer added, a few nodes on, to the result of the quantized MatMul `node`."""
    frontier, seen = list(node.output), set()
    while frontier:
        for reader in readers.get(frontier.pop(0), []):
            bias = next((n for n in reader.input if n.endswith(".bias") and n in values), None)
            if reader.op_type == "Add" and bias is not None:
                return bias
            if reader.name not in seen:
                seen.add(reader.name)
                frontier.extend(reader.output)
    raise QAError(f"cannot start from this model: the layer of {node.input[1]} was not found")


def batch_loss(torch: Any, model: Any, tokenizer: Any, batch: Sequence[Group], config: TrainConfig,
                device: Any) -> Any:
    """The listwise loss of a batch of groups, plus the span loss on each answering sentence."""
    pairs = [(group.question, text) for group in batch for text in group.texts]
    encoded = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first",
                        max_length=config.max_length, padding=True, return_tensors="pt",
                        return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")
    scores, spans = model(*(encoded[name].to(device) for name in ("input_ids", "attention_mask", "token_type_ids")))
    null = model.null_option
    loss, span_losses, at = torch.zeros((), device=device), [], 0
    for group in batch:
        options = torch.cat([null, scores[at:at + len(group.texts)]])
        loss = loss - torch.log_softmax(options, 0)[group.target]
        if group.target > 0:
            row = at + group.target - 1
            tokens = _answer_tokens(pairs[row][1], group.answers, offsets[row].tolist(), encoded.sequence_ids(row))
            if tokens is not None:
                span_losses.append(_span_loss(torch, spans[row], encoded.sequence_ids(row), tokens))
        at += len(group.texts)
    loss = loss / len(batch)
    if span_losses:
        loss = loss + config.span_weight * torch.stack(span_losses).mean()
    return loss


def _answer_tokens(pair: str, answers: Sequence[str], offsets: list[list[int]], sequence_ids: list[int | None]
                   ) -> tuple[int, int] | None:
    """First and last word piece of the first gold answer found in the sentence side of `pair`."""
    sentence = pair.split(" [SEP] ")[0].lower()
    for answer in answers:
        answer = " ".join(answer.split()).lower()
        start = sentence.find(answer) if answer else -1
        if start < 0:
            continue
        end, first, last = start + len(answer), None, None
        for token, ((low, high), side) in enumerate(zip(offsets, sequence_ids, strict=True)):
            if side != 1 or high > len(sentence) or high <= low:
                continue
            if first is None and high > start:
                first = token
            if low < end:
                last = token
        if first is not None and last is not None and last >= first:
            return first, last
    return None


def _span_loss(torch: Any, logits: Any, sequence_ids: list[int | None], tokens: tuple[int, int]) -> Any:
    """Cross-entropy of the answer's first and last word piece among the sentence side's word pieces."""
    outside = torch.tensor([side != 1 for side in sequence_ids], device=logits.device)
    start = torch.log_softmax(logits[:, 0].masked_fill(outside, -1e4), 0)[tokens[0]]
    end = torch.log_softmax(logits[:, 1].masked_fill(outside, -1e4), 0)[tokens[1]]
    return -(start + end) / 2
