#!/usr/bin/env python3
"""Compare the reference JSON (aa_reference.py) with roli's conformance output (--out of the example).

Usage: python3 compare.py REF.json ROLI.json
"""
import json
import sys


def main():
    ref = json.load(open(sys.argv[1]))
    ours = json.load(open(sys.argv[2]))
    n = ref["n"]
    print(f"n {n}, eps {ref['eps']}, seed {ref['seed']}, batch {ref['batch_size']}, threads {ref['threads']}")
    clean = [e["clean_correct"] for e in ours["pgd"]["examples"]]
    print(f"clean: roli {sum(clean) / n:.4f} reference {sum(ref['clean']) / n:.4f} "
          f"agreement {sum(a == b for a, b in zip(clean, ref['clean']))}/{n}")
    rows = [("pgd-40", ours["pgd"], ref["pgd"]["robust"], None)]
    if "aa" in ours and "aa" in ref:
        rows.append(("aa-standard", ours["aa"], ref["aa"]["robust"], ref["aa"]["broken_by"]))
    for name, rep, rrob, rbroken in rows:
        rob = [e["robust"] for e in rep["examples"]]
        agree = sum(a == b for a, b in zip(rob, rrob))
        print(f"{name:12} roli {sum(rob) / n:.4f} ({rep['seconds']:.0f} s)  reference {sum(rrob) / n:.4f}  "
              f"per-example agreement {agree}/{n}  robust only in roli {sum(a and not b for a, b in zip(rob, rrob))}, "
              f"only in reference {sum(b and not a for a, b in zip(rob, rrob))}")
        if rbroken is not None:
            bb = [e["broken_by"] for e in rep["examples"]]
            print(f"  broken_by agreement {sum(a == b for a, b in zip(bb, rbroken))}/{n}")
            for s in rep["stages"]:
                print(f"  {s['id']:8} roli {s['robust_accuracy']:.4f} ({s['seconds']:.0f} s, attacked {s['n_attacked']})"
                      f"  reference {ref['aa']['stage_robust_accuracy'].get(s['id'], float('nan')):.4f}"
                      f" ({ref['aa']['stage_seconds'].get(s['id'], float('nan')):.0f} s)")
            print(f"  reference total {ref['aa']['seconds']:.0f} s; roli flags {[f['flag'] for f in rep['flags']]}")


if __name__ == "__main__":
    main()
