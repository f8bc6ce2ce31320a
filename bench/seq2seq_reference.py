"""The translation yardstick: the PyTorch seq2seq translation tutorial, reproduced faithfully (issue 25).

This is "NLP From Scratch: Translation with a Sequence to Sequence Network and Attention"
(pytorch/tutorials, intermediate_source/seq2seq_translation_tutorial.py, the batched 2023 version):
`normalizeString` (unicode -> ASCII, lowercase, a space before . ! ?, everything but letters and ! ? to a
space), the filter to pairs of fewer than MAX_LENGTH = 10 words on both sides whose English side starts
with one of `eng_prefixes` ("i am ", "he is", ...), a `Lang` per side with SOS = 0 and EOS = 1, an
`EncoderRNN` (embedding -> dropout 0.1 -> GRU), an `AttnDecoderRNN` with `BahdanauAttention` (teacher
forcing for all MAX_LENGTH steps), hidden size 128, batches of 32 from `get_dataloader`, Adam with
lr 0.001 per network, `NLLLoss`, and the greedy `evaluate` one sentence at a time in eval mode.
It is deliberately NOT optimised: it is what rnnlm's translation models are measured against.

Kept as the tutorial computes it: `get_dataloader` pads every sentence to MAX_LENGTH with zeros, which
is the SOS index, so the encoder reads the padding as SOS tokens (its final state is taken after them),
attention attends over them, and the loss is averaged over every one of the MAX_LENGTH target positions,
padding included (the decoder learns to emit SOS after EOS). Greedy decoding runs MAX_LENGTH steps on an
unpadded sentence and cuts at the first EOS.

What differs, and only where the tutorial has nothing to say:
- the pairs come from a TSV split (`english<TAB>french`, default `../shared/data/tatoeba-eng-fra`,
  `BENCH_DATA` overrides `../shared/data` as for `make bench`), the vocabularies from the training
  split's filtered subset only;
- `--direction en-fr` (the issue's; the tutorial's own is fr->en, `--direction fr-en`);
- training stops after a wall time (`--minutes`, checked after every step) instead of 80 epochs;
- a source word never seen in training (the tutorial's `word2index[word]` would raise) is dropped from
  the source; the count of such words is reported;
- the test split's filtered subset is translated and scored with sacreBLEU (BLEU and chrF), one segment
  per distinct source sentence with all its targets in the subset as references, hypotheses and
  references both in the tutorial's normalised form (so the reference model is not penalised for its
  lowercase ASCII output, and a model scored with `score` is judged the same way).

Another script scores its own translations on the same subset with the same yardstick:

    pairs = tutorial_subset(read_pairs(test_tsv), "en-fr")     # raw (source, target) pairs
    items = references_by_source(pairs)                        # [(source, [targets])]
    score([my_translate(s) for s, _ in items], [refs for _, refs in items])  # {bleu, chrf}

    python bench/seq2seq_reference.py --direction en-fr --minutes 20 --json ref.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
import unicodedata
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import optim
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_DATA", ROOT.parent / "shared" / "data"))
DATA = SHARED / "tatoeba-eng-fra"
DIRECTIONS = ("en-fr", "fr-en")

device = torch.device("cpu")  # set by main(--device)

# -- the tutorial's data preparation -------------------------------------------------------------------
SOS_token = 0
EOS_token = 1


class Lang:
    def __init__(self, name):
        self.name = name
        self.word2index = {}
        self.word2count = {}
        self.index2word = {0: "SOS", 1: "EOS"}
        self.n_words = 2  # Count SOS and EOS

    def addSentence(self, sentence):
        for word in sentence.split(" "):
            self.addWord(word)

    def addWord(self, word):
        if word not in self.word2index:
            self.word2index[word] = self.n_words
            self.word2count[word] = 1
            self.index2word[self.n_words] = word
            self.n_words += 1
        else:
            self.word2count[word] += 1


# Turn a Unicode string to plain ASCII, thanks to https://stackoverflow.com/a/518232/2809427
def unicodeToAscii(s):
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


# Lowercase, trim, and remove non-letter characters
def normalizeString(s):
    s = unicodeToAscii(s.lower().strip())
    s = re.sub(r"([.!?])", r" \1", s)
    s = re.sub(r"[^a-zA-Z!?]+", r" ", s)
    return s.strip()


MAX_LENGTH = 10

eng_prefixes = (
    "i am ", "i m ",
    "he is", "he s ",
    "she is", "she s ",
    "you are", "you re ",
    "we are", "we re ",
    "they are", "they re ",
)  # fmt: skip


def filterPair(p):
    """`p` is the tutorial's normalised (French, English) pair: the prefix test is on the English side."""
    return (
        len(p[0].split(" ")) < MAX_LENGTH
        and len(p[1].split(" ")) < MAX_LENGTH
        and p[1].startswith(eng_prefixes)
    )


def filterPairs(pairs):
    return [pair for pair in pairs if filterPair(pair)]


def indexesFromSentence(lang, sentence):
    return [lang.word2index[word] for word in sentence.split(" ")]


def tensorFromSentence(lang, sentence):
    indexes = indexesFromSentence(lang, sentence)
    indexes.append(EOS_token)
    return torch.tensor(indexes, dtype=torch.long, device=device).view(1, -1)


def get_dataloader(pairs, input_lang, output_lang, batch_size):
    """The tutorial's `get_dataloader` over normalised (source, target) pairs: zero (= SOS) padding."""
    n = len(pairs)
    input_ids = np.zeros((n, MAX_LENGTH), dtype=np.int32)
    target_ids = np.zeros((n, MAX_LENGTH), dtype=np.int32)

    for idx, (inp, tgt) in enumerate(pairs):
        inp_ids = indexesFromSentence(input_lang, inp)
        tgt_ids = indexesFromSentence(output_lang, tgt)
        inp_ids.append(EOS_token)
        tgt_ids.append(EOS_token)
        input_ids[idx, : len(inp_ids)] = inp_ids
        target_ids[idx, : len(tgt_ids)] = tgt_ids

    train_data = TensorDataset(
        torch.LongTensor(input_ids).to(device), torch.LongTensor(target_ids).to(device)
    )
    train_sampler = RandomSampler(train_data)
    return DataLoader(train_data, sampler=train_sampler, batch_size=batch_size)


# -- the tutorial's model ------------------------------------------------------------------------------
class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)
        return context, weights


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        batch_size = encoder_outputs.size(0)
        decoder_input = torch.empty(batch_size, 1, dtype=torch.long, device=device).fill_(SOS_token)
        decoder_hidden = encoder_hidden
        decoder_outputs = []
        attentions = []

        for i in range(MAX_LENGTH):
            decoder_output, decoder_hidden, attn_weights = self.forward_step(
                decoder_input, decoder_hidden, encoder_outputs
            )
            decoder_outputs.append(decoder_output)
            attentions.append(attn_weights)

            if target_tensor is not None:
                # Teacher forcing: Feed the target as the next input
                decoder_input = target_tensor[:, i].unsqueeze(1)
            else:
                # Without teacher forcing: use its own predictions as the next input
                _, topi = decoder_output.topk(1)
                decoder_input = topi.squeeze(-1).detach()  # detach from history as input

        decoder_outputs = torch.cat(decoder_outputs, dim=1)
        decoder_outputs = F.log_softmax(decoder_outputs, dim=-1)
        attentions = torch.cat(attentions, dim=1)
        return decoder_outputs, decoder_hidden, attentions

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input))
        query = hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)
        output, hidden = self.gru(input_gru, hidden)
        output = self.out(output)
        return output, hidden, attn_weights


# -- the tutorial's training and evaluation ------------------------------------------------------------
def train_step(data, encoder, decoder, encoder_optimizer, decoder_optimizer, criterion):
    """One iteration of the tutorial's `train_epoch` loop."""
    input_tensor, target_tensor = data
    encoder_optimizer.zero_grad()
    decoder_optimizer.zero_grad()
    encoder_outputs, encoder_hidden = encoder(input_tensor)
    decoder_outputs, _, _ = decoder(encoder_outputs, encoder_hidden, target_tensor)
    loss = criterion(decoder_outputs.view(-1, decoder_outputs.size(-1)), target_tensor.view(-1))
    loss.backward()
    encoder_optimizer.step()
    decoder_optimizer.step()
    return loss.item()


def train_for(dataloader, encoder, decoder, seconds, learning_rate=0.001):
    """The tutorial's `train` (Adam per network, NLLLoss, epochs of `train_epoch`) stopped by the clock."""
    encoder_optimizer = optim.Adam(encoder.parameters(), lr=learning_rate)
    decoder_optimizer = optim.Adam(decoder.parameters(), lr=learning_rate)
    criterion = nn.NLLLoss()
    encoder.train()
    decoder.train()
    t0 = time.perf_counter()
    steps, epochs_done, epoch_losses = 0, 0, []
    out_of_time = False
    while not out_of_time:
        total_loss, batches = 0.0, 0
        for data in dataloader:
            total_loss += train_step(
                data, encoder, decoder, encoder_optimizer, decoder_optimizer, criterion
            )
            batches += 1
            steps += 1
            if time.perf_counter() - t0 >= seconds:
                out_of_time = True
                break
        if batches == len(dataloader):
            epochs_done += 1
        epoch_losses.append(total_loss / max(batches, 1))
    return {
        "steps": steps,
        "epochs": steps / len(dataloader),
        "full_epochs": epochs_done,
        "train_loss": epoch_losses[-1],  # the mean over the last (maybe partial) epoch
        "seconds": time.perf_counter() - t0,
    }


def evaluate(encoder, decoder, sentence, input_lang, output_lang):
    """The tutorial's greedy `evaluate` (one unpadded sentence, MAX_LENGTH steps, cut at EOS).

    The one change: a word outside `input_lang` is dropped instead of raising KeyError (a sentence of
    unknown words is read as EOS alone).
    """
    with torch.no_grad():
        known = [w for w in sentence.split(" ") if w in input_lang.word2index]
        input_tensor = (
            tensorFromSentence(input_lang, " ".join(known))
            if known
            else (torch.tensor([[EOS_token]], dtype=torch.long, device=device))
        )
        encoder_outputs, encoder_hidden = encoder(input_tensor)
        decoder_outputs, decoder_hidden, decoder_attn = decoder(encoder_outputs, encoder_hidden)
        _, topi = decoder_outputs.topk(1)
        decoded_ids = topi.squeeze()
        decoded_words = []
        for idx in decoded_ids:
            if idx.item() == EOS_token:
                decoded_words.append("<EOS>")
                break
            decoded_words.append(output_lang.index2word[idx.item()])
    return decoded_words, decoder_attn


# -- the yardstick, shared with scripts that score other models ---------------------------------------
def normalize(s: str) -> str:
    """The tutorial's `normalizeString`: lowercase ASCII words and ! ?, single spaces, nothing else."""
    return normalizeString(s)


def read_pairs(path) -> list[tuple[str, str]]:
    """(English, French) pairs of a `english<TAB>french` file, as written."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path}:{n}: expected 'english<TAB>french', got {line!r}")
            pairs.append((parts[0], parts[1]))
    return pairs


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: use one of {', '.join(DIRECTIONS)}")


def tutorial_subset(pairs, direction: str = "en-fr") -> list[tuple[str, str]]:
    """The tutorial's filtered subset of (English, French) `pairs` as raw (source, target) pairs.

    Kept: fewer than MAX_LENGTH words on both sides after `normalizeString`, and an English side that
    starts with one of `eng_prefixes` (the same pairs in either direction, swapped for fr-en). The
    text is returned as written so that any model can translate it; `score` normalises.
    """
    _check_direction(direction)
    kept = []
    for en, fr in pairs:
        if filterPair((normalizeString(fr), normalizeString(en))):
            kept.append((en, fr) if direction == "en-fr" else (fr, en))
    return kept


def references_by_source(pairs) -> list[tuple[str, list[str]]]:
    """(source, [its targets]) per distinct source sentence, in order of first appearance."""
    refs: dict[str, list[str]] = {}
    for src, tgt in pairs:
        targets = refs.setdefault(src, [])
        if tgt not in targets:
            targets.append(tgt)
    return list(refs.items())


def score(hypotheses: list[str], references: list[list[str]]) -> dict:
    """Corpus BLEU and chrF (sacreBLEU defaults), multi-reference, both sides through `normalize`."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
    if not hypotheses:
        raise ValueError("nothing to score: no hypotheses")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    hyps = [normalize(h) for h in hypotheses]
    k = max(len(refs) for refs in references)
    # sacreBLEU reads references as streams; None where a segment has fewer references than k
    streams = [
        [normalize(refs[j]) if j < len(refs) else None for refs in references] for j in range(k)
    ]
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(hyps, streams)
    c = chrf.corpus_score(hyps, streams)
    return {
        "bleu": b.score,
        "chrf": c.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


# -- the benchmark -------------------------------------------------------------------------------------
def _split_paths(cli):
    train = Path(cli.train) if cli.train else Path(cli.data) / "train.tsv"
    test = Path(cli.test) if cli.test else Path(cli.data) / "test.tsv"
    for p in (train, test):
        if not p.exists():
            raise SystemExit(f"{p}: no such file (pass --data, --train/--test, or set BENCH_DATA)")
    return train, test


def main(argv=None):
    global device
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direction", choices=DIRECTIONS, default="en-fr")
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall time")
    parser.add_argument("--data", default=str(DATA), help="folder with train.tsv and test.tsv")
    parser.add_argument("--train", default=None, help="training TSV (default: DATA/train.tsv)")
    parser.add_argument("--test", default=None, help="test TSV (default: DATA/test.tsv)")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument(
        "--translations", default=None, help="write source / hypothesis / references as JSONL"
    )
    cli = parser.parse_args(argv)
    if cli.threads:
        torch.set_num_threads(cli.threads)
    device = torch.device(cli.device)
    random.seed(cli.seed)
    torch.manual_seed(cli.seed)

    train_path, test_path = _split_paths(cli)
    t0 = time.perf_counter()
    train_pairs = tutorial_subset(read_pairs(train_path), cli.direction)
    test_pairs = tutorial_subset(read_pairs(test_path), cli.direction)
    if not train_pairs or not test_pairs:
        raise SystemExit(
            f"the tutorial's filter keeps {len(train_pairs)} training and {len(test_pairs)} test "
            "pairs: nothing to train on or score"
        )
    src_name, tgt_name = cli.direction.split("-")
    input_lang, output_lang = Lang(src_name), Lang(tgt_name)
    norm_train = [(normalizeString(s), normalizeString(t)) for s, t in train_pairs]
    for s, t in norm_train:
        input_lang.addSentence(s)
        output_lang.addSentence(t)
    dataloader = get_dataloader(norm_train, input_lang, output_lang, cli.batch_size)
    data_seconds = time.perf_counter() - t0

    encoder = EncoderRNN(input_lang.n_words, cli.hidden_size).to(device)
    decoder = AttnDecoderRNN(cli.hidden_size, output_lang.n_words).to(device)
    result = train_for(dataloader, encoder, decoder, cli.minutes * 60, cli.lr)

    # Translate every distinct test source of the subset, the tutorial's way (eval mode, one at a time)
    items = references_by_source(test_pairs)
    encoder.eval()
    decoder.eval()
    hyps, oov_words, oov_sentences = [], 0, 0
    t1 = time.perf_counter()
    for src, _ in items:
        sentence = normalizeString(src)
        unknown = sum(w not in input_lang.word2index for w in sentence.split(" "))
        oov_words += unknown
        oov_sentences += unknown > 0
        out, _ = evaluate(encoder, decoder, sentence, input_lang, output_lang)
        hyps.append(" ".join(w for w in out if w != "<EOS>"))
    decode_seconds = time.perf_counter() - t1
    scores = score(hyps, [refs for _, refs in items])

    result.update(
        reference="pytorch seq2seq_translation_tutorial (GRU encoder, Bahdanau attention decoder)",
        direction=cli.direction,
        bleu=scores["bleu"],
        chrf=scores["chrf"],
        sentences=len(items),
        test_pairs=len(test_pairs),
        train_pairs=len(train_pairs),
        minutes=cli.minutes,
        decode_seconds=decode_seconds,
        sentences_per_sec=len(items) / decode_seconds if decode_seconds > 0 else float("nan"),
        oov_source_words=oov_words,
        oov_source_sentences=oov_sentences,
        input_vocab=input_lang.n_words,
        output_vocab=output_lang.n_words,
        hidden_size=cli.hidden_size,
        batch_size=cli.batch_size,
        lr=cli.lr,
        data_seconds=data_seconds,
        train=str(train_path),
        test=str(test_path),
        threads=torch.get_num_threads(),
        device=str(device),
        seed=cli.seed,
        bleu_signature=scores["bleu_signature"],
        chrf_signature=scores["chrf_signature"],
    )
    if cli.translations:
        with open(cli.translations, "w", encoding="utf-8") as f:
            for (src, refs), hyp in zip(items, hyps, strict=True):
                f.write(json.dumps({"source": src, "hypothesis": hyp, "references": refs}) + "\n")
    print(json.dumps(result))
    if cli.json:
        with open(cli.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
