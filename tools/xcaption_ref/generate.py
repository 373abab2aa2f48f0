"""Greedy and beam-search generation with the semantics of transformers' `generate()` for an
encoder-decoder model (batch size 1, num_return_sequences 1).

ref: transformers generation/utils.py (_prepare_generated_length, _get_logits_processor,
_sample with do_sample=False, _beam_search and its helpers _get_top_k_continuations,
_get_running_beams_for_next_iteration, _update_finished_beams, _check_early_stop_heuristic,
_beam_search_has_unfinished_sequences), generation/logits_process.py (RepetitionPenalty,
NoRepeatNGram, MinLength, MinNewTokensLength), generation/stopping_criteria.py.

Decoder prompts: `prompt_ids` (the decoder input before the first generated token, start token
first; default [decoder_start_token_id]) make the input length P; HF's length rules, the
processors' history and the beam-score normalisation then count P as the prompt, as they do for a
decoder-only model given input_ids (BLIP's text decoder).

Beam search follows the current vectorised implementation (transformers >= 4.50). The older
BeamSearchScorer/BeamHypotheses implementation (4.36 - 4.49) is available with `legacy_beam=True`;
the two differ only in when the `early_stopping=False/"never"` heuristic ends the search (the
legacy one compares against the best of all 2K candidates, eos ones included; the current one
against the best running beam), which can change the result in rare cases.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .config import GenerationConfig
from .modeling import VisionEncoderDecoder

NEG_INF = float("-inf")
_OVERRIDABLE = {f.name for f in dataclasses.fields(GenerationConfig)}


# --------------------------------------------------------------------------------------------
# settings

@dataclass
class Resolved:
    """The effective settings of one generate() call (after HF's length bookkeeping)."""
    max_length: int            # total length including the decoder start token
    min_length: int            # idem; eos suppressed while len(ids) < min_length
    min_new_tokens: Optional[int]
    num_beams: int
    length_penalty: float
    early_stopping: object     # True, False or "never"
    no_repeat_ngram_size: int
    repetition_penalty: float
    decoder_start_token_id: int
    eos_token_ids: List[int]
    pad_token_id: Optional[int]
    # ForcedBOSTokenLogitsProcessor / ForcedEOSTokenLogitsProcessor (BART-style models; unset elsewhere)
    forced_bos_token_id: Optional[int] = None
    forced_eos_token_id: Optional[int] = None

    def to_dict(self) -> Dict:
        d = dataclasses.asdict(self)
        for k in ("forced_bos_token_id", "forced_eos_token_id"):
            if d[k] is None:
                del d[k]
        return d


def resolve(gen: GenerationConfig, model_config=None, *, input_len: int = 1,
            max_positions: Optional[int] = None, **overrides) -> Resolved:
    """Explicit arguments win over the generation config. Length rules (input length is
    `input_len`, 1 for the decoder start token alone): max_new_tokens -> max_length =
    max_new_tokens + input_len; else an untouched max_length equal to the library default 20
    becomes 20 + input_len (20 new tokens) even when it came from a file, because HF tests the
    value, not its origin, and is then capped at `max_positions` (the generating model's
    max_position_embeddings, when its config has one); min_new_tokens -> min_length =
    min_new_tokens + input_len."""
    bad = set(overrides) - _OVERRIDABLE
    if bad:
        raise ValueError(f"unknown generation options {sorted(bad)}")
    g = dataclasses.replace(gen, **overrides)
    max_length = g.max_length
    if g.max_new_tokens is not None:
        max_length = g.max_new_tokens + input_len
    elif "max_length" not in overrides and max_length == GenerationConfig().max_length:
        max_length = max_length + input_len
        if max_positions is not None:
            max_length = min(max_length, max_positions)
    min_length = g.min_length
    if g.min_new_tokens is not None:
        min_length = g.min_new_tokens + input_len
    start = g.decoder_start_token_id
    if start is None and model_config is not None:
        start = model_config.decoder_start_token_id
    if start is None:
        start = g.bos_token_id
    if start is None:
        raise ValueError("no decoder_start_token_id (nor bos_token_id) is set")
    eos = g.eos_ids()
    pad = g.pad_token_id if g.pad_token_id is not None else (eos[0] if eos else None)
    return Resolved(max_length=max_length, min_length=min_length, min_new_tokens=g.min_new_tokens,
                    num_beams=g.num_beams, length_penalty=float(g.length_penalty),
                    early_stopping=g.early_stopping, no_repeat_ngram_size=g.no_repeat_ngram_size,
                    repetition_penalty=float(g.repetition_penalty), decoder_start_token_id=start,
                    eos_token_ids=eos, pad_token_id=pad)


# --------------------------------------------------------------------------------------------
# logits processors: (input_ids (B, T) incl. the start token, scores (B, V)) -> scores

def apply_processors(r: Resolved, input_ids: torch.Tensor, scores: torch.Tensor,
                     prompt_len: int = 1) -> torch.Tensor:
    """HF's order: repetition penalty, no-repeat-ngram, min length, min new tokens (which skips
    the `prompt_len` input tokens), forced BOS (at cur_len 1 only bos survives, with score 0),
    forced EOS (at cur_len max_length - 1 likewise for eos)."""
    scores = scores.clone()
    if r.repetition_penalty != 1.0:
        s = torch.gather(scores, 1, input_ids)
        s = torch.where(s < 0, s * r.repetition_penalty, s / r.repetition_penalty)
        scores.scatter_(1, input_ids, s)
    n = r.no_repeat_ngram_size
    if n > 0:
        cur_len = input_ids.size(1)
        if cur_len + 1 >= n:
            for b in range(input_ids.size(0)):
                ids = input_ids[b].tolist()
                prefix = tuple(ids[cur_len + 1 - n:cur_len]) if n > 1 else ()
                banned = {ids[i + n - 1] for i in range(cur_len - n + 1) if tuple(ids[i:i + n - 1]) == prefix}
                for t in banned:
                    scores[b, t] = NEG_INF
    if r.eos_token_ids:
        cur_len = input_ids.size(1)
        suppress = r.min_length > 0 and cur_len < r.min_length
        if r.min_new_tokens is not None and r.min_new_tokens > 0 and cur_len - prompt_len < r.min_new_tokens:
            suppress = True
        if suppress:
            for e in r.eos_token_ids:
                scores[:, e] = NEG_INF
    cur_len = input_ids.size(1)
    for tok, at in ((r.forced_bos_token_id, 1), (r.forced_eos_token_id, r.max_length - 1)):
        if tok is not None and cur_len == at:
            scores[:, :] = NEG_INF
            scores[:, tok] = 0.0
    return scores


# --------------------------------------------------------------------------------------------
# decoder stepping with an optional KV cache

class Stepper:
    """Runs the decoder one token at a time for a batch of hypotheses that share one image."""

    def __init__(self, model: VisionEncoderDecoder, enc_proj: torch.Tensor, batch: int,
                 use_cache: bool = True, recompute_cross_kv: bool = False):
        self.model = model
        self.enc = enc_proj.expand(batch, -1, -1)               # (B, N, D)
        self.cross = None if recompute_cross_kv else [
            (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
            for k, v in model.decoder.cross_kv(enc_proj)]
        self.use_cache = use_cache
        self.past = None

    def step(self, seqs: torch.Tensor, output_attentions: bool):
        """seqs (B, T): full sequences so far; returns (logits (B, V), cross attn per layer
        (B, H, N) for the last position)."""
        if self.use_cache:
            ids = seqs if self.past is None else seqs[:, -1:]
            out = self.model.decoder(ids, past=self.past, encoder_hidden_states=self.enc,
                                     cross=self.cross, output_attentions=output_attentions)
            self.past = out.past
        else:
            out = self.model.decoder(seqs, encoder_hidden_states=self.enc, cross=self.cross,
                                     output_attentions=output_attentions)
        attn = [a[:, :, -1, :] for a in out.cross_attentions] if output_attentions else None
        return out.logits[:, -1, :], attn

    def reorder(self, parents: torch.Tensor):
        if self.past is not None:
            self.past = [(k.index_select(0, parents), v.index_select(0, parents)) for k, v in self.past]


# --------------------------------------------------------------------------------------------
# results

@dataclass
class Result:
    mode: str                              # "greedy" or "beam"
    sequence: List[int]                    # as HF returns it: decoder start token first
    score: float                           # beams: sequences_scores; greedy: sum of token_logprobs
    sum_logprobs: float                    # sum of token_scores as accumulated in float32
    token_logprobs: List[float]            # log_softmax(raw logits)[token] per generated token
    token_scores: List[float]              # processed log-prob per token (what beams accumulate);
                                           # greedy: processed logits[token]
    cross_attentions: Optional[np.ndarray] = None  # (generated, layers, heads, N)
    step_logits: Optional[np.ndarray] = None       # greedy: raw logits (generated, V)
    resolved: Optional[Resolved] = None
    prompt_len: int = 1                            # tokens of `sequence` before the generated ones

    @property
    def generated(self) -> List[int]:
        return self.sequence[self.prompt_len:]


def first_difference(got: List[int], want: List[int]) -> int:
    """Index of the first token where two id sequences differ; the shorter length when one is a
    prefix of the other (for reports of checks against this reference)."""
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return i
    return min(len(got), len(want))


def encode_image(model: VisionEncoderDecoder, pixel_values: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) -> the decoder's cross-attention input (1, N, D)."""
    with torch.no_grad():
        return model.project(model.encode(pixel_values))


LogitsHook = Optional[Callable[[torch.Tensor], torch.Tensor]]


def generate(model: VisionEncoderDecoder, pixel_values: torch.Tensor, gen: GenerationConfig, *,
             output_attentions: bool = False, recompute_cross_kv: bool = False,
             use_cache: bool = True, legacy_beam: bool = False, logits_hook: LogitsHook = None,
             prompt_ids: Optional[List[int]] = None, max_positions: Optional[int] = None,
             **overrides) -> Result:
    """HF generate() for one image. `logits_hook` (tests only) may perturb the raw logits.
    `prompt_ids`: the decoder input before the first generated token (default: the start token);
    `max_positions`: caps an untouched default max_length (see resolve)."""
    n_prompt = len(prompt_ids) if prompt_ids is not None else 1
    r = resolve(gen, model.config, input_len=n_prompt, max_positions=max_positions, **overrides)
    prompt = list(prompt_ids) if prompt_ids is not None else [r.decoder_start_token_id]
    enc = encode_image(model, pixel_values)
    with torch.no_grad():
        if r.num_beams == 1:
            res = _greedy(model, enc, r, output_attentions, recompute_cross_kv, use_cache, logits_hook, prompt)
        elif legacy_beam:
            res = _beam_legacy(model, enc, r, output_attentions, recompute_cross_kv, use_cache, logits_hook, prompt)
        else:
            res = _beam(model, enc, r, output_attentions, recompute_cross_kv, use_cache, logits_hook, prompt)
    res.resolved = r
    res.prompt_len = len(prompt)
    return res


def _stack_attn(steps: List[List[torch.Tensor]]) -> Optional[np.ndarray]:
    """steps[t][layer] (H, N) -> (T, L, H, N)."""
    if not steps:
        return None
    return np.stack([np.stack([a.numpy() for a in layers]) for layers in steps]).astype(np.float32)


def _greedy(model, enc, r: Resolved, output_attentions, recompute, use_cache, hook, prompt=None) -> Result:
    stepper = Stepper(model, enc, 1, use_cache, recompute)
    prompt = list(prompt) if prompt is not None else [r.decoder_start_token_id]
    seq = torch.tensor([prompt], dtype=torch.long)
    logprobs, proc, attn_steps, step_logits = [], [], [], []
    total = torch.zeros((), dtype=torch.float32)
    while True:
        logits, attn = stepper.step(seq, output_attentions)
        if hook is not None:
            logits = hook(logits)
        scores = apply_processors(r, seq, logits, len(prompt))
        tok = int(torch.argmax(scores[0]))  # first maximum: ties go to the lower id
        lp = F.log_softmax(logits[0], dim=-1)[tok]
        total = total + lp
        logprobs.append(float(lp))
        proc.append(float(scores[0, tok]))
        step_logits.append(logits[0].numpy().copy())
        if output_attentions:
            attn_steps.append([a[0] for a in attn])
        seq = torch.cat([seq, torch.tensor([[tok]])], dim=1)
        if tok in r.eos_token_ids or seq.size(1) >= r.max_length:
            break
    return Result("greedy", seq[0].tolist(), float(total), float(total), logprobs, proc,
                  _stack_attn(attn_steps), np.stack(step_logits))


@dataclass
class _History:
    """Per-hypothesis bookkeeping carried through beam reordering."""
    logprobs: List[float] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    attn: List[List[torch.Tensor]] = field(default_factory=list)

    def extend(self, lp: float, sc: float, attn) -> "_History":
        return _History(self.logprobs + [lp], self.scores + [sc], self.attn + ([attn] if attn is not None else []))


def _beam_step(stepper, running, cur_len, r, output_attentions, hook, prompt_len=1):
    logits, attn = stepper.step(running[:, :cur_len], output_attentions)
    if hook is not None:
        logits = hook(logits)
    raw_lp = F.log_softmax(logits, dim=-1)
    lp = apply_processors(r, running[:, :cur_len], raw_lp, prompt_len)
    return raw_lp, lp, attn


def _beam(model, enc, r: Resolved, output_attentions, recompute, use_cache, hook, prompt_ids=None) -> Result:
    """transformers >= 4.50 `_beam_search`, batch size 1, one list of hypotheses of size K."""
    prompt_ids = list(prompt_ids) if prompt_ids is not None else [r.decoder_start_token_id]
    K, max_length, prompt = r.num_beams, r.max_length, len(prompt_ids)
    eos = torch.tensor(r.eos_token_ids, dtype=torch.long)
    stepper = Stepper(model, enc, K, use_cache, recompute)
    fill = r.pad_token_id if r.pad_token_id is not None else -1
    running = torch.full((K, max_length), fill, dtype=torch.long)
    running[:, :prompt] = torch.tensor(prompt_ids, dtype=torch.long)
    running_scores = torch.zeros(K, dtype=torch.float32)
    running_scores[1:] = -1e9
    running_hist = [_History() for _ in range(K)]
    fin_seqs = running.clone()
    fin_scores = torch.full((K,), -1e9, dtype=torch.float32)
    fin_done = torch.zeros(K, dtype=torch.bool)
    fin_hist = [_History() for _ in range(K)]
    fin_len = [0] * K
    heuristic_unsat = True
    keep = max(2, 1 + len(r.eos_token_ids)) * K  # HF's beams_to_keep: 2K with one eos token
    top_mask = torch.zeros(keep, dtype=torch.bool)
    top_mask[:K] = True
    cur_len = prompt
    while True:
        raw_lp, lp, attn = _beam_step(stepper, running, cur_len, r, output_attentions, hook, prompt)
        vocab = lp.size(-1)
        acc = (lp + running_scores[:, None]).reshape(-1)
        top_vals, top_idx = torch.topk(acc, k=keep)
        beams, toks = top_idx // vocab, top_idx % vocab
        cand = running[beams].clone()
        cand[:, cur_len] = toks
        cand_hist = [running_hist[int(b)].extend(float(raw_lp[b, t]), float(lp[b, t]),
                                                 [a[b] for a in attn] if attn is not None else None)
                     for b, t in zip(beams.tolist(), toks.tolist())]
        hits = torch.isin(toks, eos) | torch.tensor(cur_len + 1 >= max_length)
        # e. next running beams: the best K candidates that did not stop
        run_lp = top_vals + hits.to(torch.float32) * -1.0e9
        nxt = torch.topk(run_lp, k=K).indices
        running = cand[nxt]
        running_scores = run_lp[nxt]
        running_hist = [cand_hist[int(i)] for i in nxt]
        parents = beams[nxt]
        # f. finished hypotheses: stopped candidates among the first K ranks, length-normalised
        just = hits & top_mask
        norm = top_vals / ((cur_len + 1 - prompt) ** r.length_penalty)
        full = bool(fin_done.all()) and r.early_stopping is True
        norm = norm + float(full) * -1.0e9
        norm = norm + float(not heuristic_unsat) * -1.0e9
        norm = norm + (~just).to(torch.float32) * -1.0e9
        merged_scores = torch.cat([fin_scores, norm])
        sel = torch.topk(merged_scores, k=K).indices
        merged_seqs = torch.cat([fin_seqs, cand])
        merged_done = torch.cat([fin_done, just])
        merged_hist = fin_hist + cand_hist
        merged_len = fin_len + [cur_len + 1] * keep
        fin_seqs, fin_scores, fin_done = merged_seqs[sel], merged_scores[sel], merged_done[sel]
        fin_hist = [merged_hist[int(i)] for i in sel]
        fin_len = [merged_len[int(i)] for i in sel]
        if use_cache:
            stepper.reorder(parents)
        cur_len += 1
        # g. early-stop heuristic and loop condition
        if r.early_stopping == "never" and r.length_penalty > 0.0:
            best_len = max_length - prompt
        else:
            best_len = cur_len - prompt
        best_possible = running_scores[:1] / (best_len ** r.length_penalty)
        worst_finished = torch.where(fin_done, torch.min(fin_scores), torch.tensor(-1.0e9))
        heuristic_unsat = heuristic_unsat and bool(torch.any(best_possible > worst_finished))
        exists_open = not (bool(fin_done.all()) and r.early_stopping is True)
        valid = not bool(hits.all())
        if not (heuristic_unsat and exists_open and valid):
            break
    n = fin_len[0]
    h = fin_hist[0]
    total = torch.zeros((), dtype=torch.float32)
    for s in h.scores:
        total = total + torch.tensor(s, dtype=torch.float32)
    return Result("beam", fin_seqs[0, :n].tolist(), float(fin_scores[0]), float(total),
                  h.logprobs, h.scores, _stack_attn(h.attn), None)


def _beam_legacy(model, enc, r: Resolved, output_attentions, recompute, use_cache, hook,
                 prompt_ids=None) -> Result:
    """transformers 4.36 - 4.49 BeamSearchScorer + BeamHypotheses, batch size 1."""
    prompt_ids = list(prompt_ids) if prompt_ids is not None else [r.decoder_start_token_id]
    K, max_length, prompt = r.num_beams, r.max_length, len(prompt_ids)
    stepper = Stepper(model, enc, K, use_cache, recompute)
    running = torch.tensor([prompt_ids] * K, dtype=torch.long)
    running_scores = torch.zeros(K, dtype=torch.float32)
    running_scores[1:] = -1e9
    running_hist = [_History() for _ in range(K)]
    hyps: List[Tuple[float, List[int], _History]] = []
    worst = 1e9
    done = False

    def add(seq, sum_lp, gen_len, hist):
        nonlocal worst
        score = sum_lp / (gen_len ** r.length_penalty)
        if len(hyps) < K or score > worst:
            hyps.append((score, seq, hist))
            if len(hyps) > K:
                order = sorted((s, i) for i, (s, _, _) in enumerate(hyps))
                del hyps[order[0][1]]
                worst = order[1][0]
            else:
                worst = min(score, worst)

    def is_done(best_sum, cur_len_l):
        if len(hyps) < K:
            return False
        if r.early_stopping is True:
            return True
        if r.early_stopping == "never" and r.length_penalty > 0.0:
            best = best_sum / (max_length - prompt) ** r.length_penalty
        else:
            best = best_sum / (cur_len_l - prompt) ** r.length_penalty
        return worst >= best

    while True:
        cur_len = running.size(1)
        raw_lp, lp, attn = _beam_step(stepper, running, cur_len, r, output_attentions, hook, prompt)
        vocab = lp.size(-1)
        acc = (lp + running_scores[:, None]).reshape(-1)
        top_vals, top_idx = torch.topk(acc, k=2 * K)
        beams, toks = top_idx // vocab, top_idx % vocab
        cur_len_l = cur_len + 1
        nb_scores, nb_toks, nb_parents, nb_hist = [], [], [], []
        for rank, (v, b, t) in enumerate(zip(top_vals.tolist(), beams.tolist(), toks.tolist())):
            hist = running_hist[b].extend(float(raw_lp[b, t]), float(lp[b, t]),
                                          [a[b] for a in attn] if attn is not None else None)
            if t in r.eos_token_ids:
                if rank >= K:
                    continue
                add(running[b].tolist() + [t], v, cur_len_l - prompt, hist)
            else:
                nb_scores.append(v)
                nb_toks.append(t)
                nb_parents.append(b)
                nb_hist.append(hist)
            if len(nb_toks) == K:
                break
        done = done or is_done(float(top_vals.max()), cur_len_l)
        parents = torch.tensor(nb_parents)
        running = torch.cat([running[parents], torch.tensor(nb_toks).unsqueeze(1)], dim=1)
        running_scores = torch.tensor(nb_scores, dtype=torch.float32)
        running_hist = nb_hist
        if use_cache:
            stepper.reorder(parents)
        if done or running.size(1) >= max_length:
            break
    if not done:
        for k in range(K):
            add(running[k].tolist(), float(running_scores[k]), running.size(1) - prompt, running_hist[k])
    score, seq, h = sorted(hyps, key=lambda x: x[0])[-1]
    total = torch.zeros((), dtype=torch.float32)
    for s in h.scores:
        total = total + torch.tensor(s, dtype=torch.float32)
    return Result("beam", seq, float(torch.tensor(score, dtype=torch.float32)), float(total),
                  h.logprobs, h.scores, _stack_attn(h.attn), None)
