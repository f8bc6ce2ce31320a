"""The yardstick: the classic PyTorch word-language-model example, reproduced faithfully.

This is pytorch/examples `word_language_model` (main.py, model.py, data.py) cut down to the RNN path:
`batchify` into columns, windows of `bptt` tokens, the hidden state carried and detached between
windows (`repackage_hidden`), embedding -> dropout -> LSTM/GRU -> dropout -> linear decoder,
`log_softmax` + `NLLLoss`, gradient clipping, and the manual SGD update `p.data.add_(p.grad, alpha=-lr)`.
It is deliberately NOT optimised: it is what rnnlm is measured against (`make bench`).

The only additions are the parameters of the benchmark's three configurations (`--config word|char|tiny`),
character-level reading for the char configurations (every character a token, as rnnlm's char
tokenizer), a limit on the number of steps, and a steady-state timer (the first `--warmup` steps are not
timed). Results go to stdout and, with `--json`, to a file.

    python bench/reference.py --config word --data ../shared/data/wikitext-2-mini --steps 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The benchmark's configurations. `word` is the example's own defaults (emsize 200, nhid 200, nlayers 2,
# dropout 0.2, lr 20, clip 0.25, batch 20, bptt 35, eval batch 10).
CONFIGS: dict[str, dict] = {
    "word": dict(
        tokens="word", model="LSTM", emsize=200, nhid=200, nlayers=2, batch_size=20, bptt=35
    ),
    # lr 2, not the example's 20: at 20 this GRU diverges within 16 steps for some seeds (validation
    # perplexity 10^4-10^5 measured), which leaves nothing to compare.
    "char": dict(
        tokens="char", model="GRU", emsize=512, nhid=512, nlayers=2, batch_size=64, bptt=128, lr=2.0
    ),
    "tiny": dict(tokens="char", model="GRU", emsize=64, nhid=64, nlayers=1, batch_size=32, bptt=64),
}
COMMON = dict(lr=20.0, clip=0.25, dropout=0.2, eval_batch_size=10, seed=1111)


# -- data.py ------------------------------------------------------------------------------------------
class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    def __init__(self, path, chars=False):
        self.dictionary = Dictionary()
        self.chars = chars
        self.train = self.tokenize(os.path.join(path, "train.txt"))
        self.valid = self.tokenize(os.path.join(path, "valid.txt"))
        self.test = self.tokenize(os.path.join(path, "test.txt"))

    def _tokens(self, line):
        # The example splits on whitespace and ends each line with <eos>; the char configurations read
        # every character (the newline included) as a token.
        return list(line) if self.chars else line.split() + ["<eos>"]

    def tokenize(self, path):
        """Tokenizes a text file."""
        assert os.path.exists(path)
        # Add words to the dictionary
        with open(path, encoding="utf8") as f:
            for line in f:
                for word in self._tokens(line):
                    self.dictionary.add_word(word)

        # Tokenize file content
        with open(path, encoding="utf8") as f:
            idss = []
            for line in f:
                ids = []
                for word in self._tokens(line):
                    ids.append(self.dictionary.word2idx[word])
                idss.append(torch.tensor(ids).type(torch.int64))
            ids = torch.cat(idss)

        return ids


# -- model.py -----------------------------------------------------------------------------------------
class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(
            ninp, nhid, nlayers, dropout=dropout if nlayers > 1 else 0.0
        )
        self.decoder = nn.Linear(nhid, ntoken)
        self.init_weights()
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (
                weight.new_zeros(self.nlayers, bsz, self.nhid),
                weight.new_zeros(self.nlayers, bsz, self.nhid),
            )
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


# -- main.py ------------------------------------------------------------------------------------------
def batchify(data, bsz, device):
    # Work out how cleanly we can divide the dataset into bsz parts.
    nbatch = data.size(0) // bsz
    # Trim off any extra elements that wouldn't cleanly fit (remainders).
    data = data.narrow(0, 0, nbatch * bsz)
    # Evenly divide the data across the bsz batches.
    data = data.view(bsz, -1).t().contiguous()
    return data.to(device)


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len].view(-1)
    return data, target


def evaluate(model, criterion, data_source, eval_batch_size, bptt):
    # Turn on evaluation mode which disables dropout.
    model.eval()
    total_loss = 0.0
    hidden = model.init_hidden(eval_batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, bptt):
            data, targets = get_batch(data_source, i, bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * criterion(output, targets).item()
    return total_loss / (len(data_source) - 1)


def train_steps(model, criterion, train_data, args, steps, warmup, lr):
    """The example's `train()` for one epoch, stopped after `steps` windows; returns timings."""
    # Turn on training mode which enables dropout.
    model.train()
    total_loss = 0.0
    hidden = model.init_hidden(args.batch_size)
    timed_tokens, t_start, t_last, step_seconds = 0, None, None, []
    done = 0
    for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
        if batch >= steps:
            break
        data, targets = get_batch(train_data, i, args.bptt)
        # Starting each batch, we detach the hidden state from how it was previously produced.
        # If we didn't, the model would try backpropagating all the way to start of the dataset.
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()

        # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs / LSTMs.
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)

        total_loss += loss.item()
        done += 1
        # Steady state: time from the end of step `warmup` to the end of the last step.
        now = time.perf_counter()
        if batch + 1 == warmup:
            t_start = now
        elif batch + 1 > warmup:
            timed_tokens += targets.numel()
            prev = t_last if t_last is not None else t_start
            if prev is not None:
                step_seconds.append(now - prev)
            t_last = now
    elapsed = (t_last - t_start) if t_start is not None and t_last is not None else math.nan
    return {
        "steps": done,
        "timed_steps": max(done - warmup, 0),
        "timed_tokens": timed_tokens,
        "timed_seconds": elapsed,
        "tokens_per_sec": timed_tokens / elapsed if elapsed and elapsed > 0 else math.nan,
        "step_ms_median": 1000 * sorted(step_seconds)[len(step_seconds) // 2]
        if step_seconds
        else math.nan,
        "train_loss": total_loss / max(done, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="word")
    parser.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument(
        "--steps", type=int, default=0, help="training windows (0: one whole epoch)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="steps not timed")
    parser.add_argument("--seed", type=int, default=COMMON["seed"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the example's --cuda)")
    parser.add_argument("--batch-size", type=int, default=0, help="columns (0: the config's)")
    parser.add_argument("--eval", action="store_true", help="validation perplexity after training")
    parser.add_argument(
        "--eval-windows", type=int, default=0, help="score only this many validation windows"
    )
    parser.add_argument("--json", default=None, help="write the results to this file")
    cli = parser.parse_args(argv)
    args = argparse.Namespace(**{**COMMON, **CONFIGS[cli.config]})
    args.seed = cli.seed
    if cli.batch_size:
        args.batch_size = cli.batch_size
    if cli.threads:
        torch.set_num_threads(cli.threads)

    # Set the random seed manually for reproducibility.
    torch.manual_seed(args.seed)
    device = torch.device(cli.device)

    t0 = time.perf_counter()
    corpus = Corpus(cli.data, chars=args.tokens == "char")
    train_data = batchify(corpus.train, args.batch_size, device)
    val_data = batchify(corpus.valid, args.eval_batch_size, device)
    data_seconds = time.perf_counter() - t0

    ntokens = len(corpus.dictionary)
    model = RNNModel(args.model, ntokens, args.emsize, args.nhid, args.nlayers, args.dropout).to(
        device
    )
    criterion = nn.NLLLoss()

    steps = cli.steps or (train_data.size(0) - 1 + args.bptt - 1) // args.bptt
    result = train_steps(model, criterion, train_data, args, steps, cli.warmup, args.lr)
    result.update(
        config=cli.config,
        vocab_size=ntokens,
        batch_size=args.batch_size,
        bptt=args.bptt,
        tokens_per_step=args.batch_size * args.bptt,
        data_seconds=data_seconds,
        threads=torch.get_num_threads(),
        seed=args.seed,
    )
    if cli.eval:
        t1 = time.perf_counter()
        if cli.eval_windows:  # a quick check only: the first windows of the validation split
            val_data = val_data[: cli.eval_windows * args.bptt + 1]
        val_loss = evaluate(model, criterion, val_data, args.eval_batch_size, args.bptt)
        result.update(
            val_loss=val_loss,
            val_ppl=math.exp(min(val_loss, 700)),
            eval_seconds=time.perf_counter() - t1,
        )
    print(json.dumps(result, indent=1))
    if cli.json:
        with open(cli.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
