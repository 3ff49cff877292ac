"""Prints cargo-mutants' outcomes per file: caught, missed, unviable, timeout and the score (the
share of viable mutants the tests detect: caught, or hung until the timeout, which a mutant that
loops forever does), then the missed and timed-out ones by name."""
import collections
import json
import sys

KINDS = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable", "Timeout": "timeout"}

outcomes = json.load(open(sys.argv[1]))["outcomes"]
per_file = collections.defaultdict(collections.Counter)
missed = []
for outcome in outcomes:
    mutant = outcome["scenario"].get("Mutant") if isinstance(outcome["scenario"], dict) else None
    if mutant is None:  # the unmutated baseline
        continue
    kind = KINDS.get(outcome["summary"], outcome["summary"].lower())
    per_file[mutant["file"]][kind] += 1
    if kind not in ("caught", "unviable"):
        missed.append(f"{kind}: {mutant['name']}")

print(f"{'file':<44} {'caught':>7} {'missed':>7} {'unviable':>9} {'timeout':>8} {'score':>7}")
total = collections.Counter()
for name in sorted(per_file):
    c = per_file[name]
    total.update(c)
    viable = c["caught"] + c["missed"] + c["timeout"]
    score = f"{100 * (c['caught'] + c['timeout']) / viable:.1f}%" if viable else "-"
    short = name.removeprefix("shared/billy-core/src/")
    print(f"{short:<44} {c['caught']:>7} {c['missed']:>7} {c['unviable']:>9} {c['timeout']:>8} {score:>7}")
viable = total["caught"] + total["missed"] + total["timeout"]
score = f"{100 * (total['caught'] + total['timeout']) / viable:.1f}%" if viable else "-"
print(f"{'all':<44} {total['caught']:>7} {total['missed']:>7} {total['unviable']:>9} {total['timeout']:>8} {score:>7}")
for line in missed:
    print(line)
