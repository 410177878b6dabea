"""On the GPU: si generate --json (CUDA, f32 weights and cache) against the HF float64 references."""
import json, subprocess, sys, time
SI = sys.argv[1:]
cases = [("tests/reference/hf-llama/gqa-tiny", 1), ("tests/reference/hf-llama/mha-tiny", 0), ("tests/reference/hf-llama/gqa-hd128-long", 0)]
ok = True
for d, pi in cases:
    p = json.load(open(d + "/reference.json"))["prompts"][pi]
    n = len(p["greedy"])
    t0 = time.time()
    r = subprocess.run(SI + ["generate", "--model", d, "--prompt-ids", ",".join(map(str, p["prompt"])), "--max-new-tokens", str(n),
                             "--greedy", "--ignore-eos", "--json", "--device", "cuda", "--weight-dtype", "f32", "--kv-dtype", "f32"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(d, "FAILED", r.returncode, r.stderr[-2000:]); ok = False; continue
    j = json.loads(r.stdout)
    worst = 0.0
    for s, (ref, got) in enumerate(zip(p["step_logits"], j["step_logits"])):
        scale = max(1.0, max(abs(x) for x in ref))
        worst = max(worst, max(abs(a - b) for a, b in zip(ref, got)) / scale)
    same = j["tokens"] == p["greedy"]
    ok &= same and worst <= 1e-4
    print(f"{d} prompt {pi}: {len(p['prompt'])} prompt tokens, tokens match {same}, worst step-logit error {worst:.2e} (x max(1,|max|)), "
          f"engine {j['engine']} specialized {j['specialized']}, prefill {j['prefill_ms']} ms, {time.time()-t0:.1f} s, {j['device']}")
print("CHECK", "PASSED" if ok else "FAILED")
