"""Masked (absorbing-state) discrete diffusion captioning: the suite's second diffusion paradigm.

Papers: MDLM (Sahoo et al., "Simple and Effective Masked Diffusion Language Models", NeurIPS 2024,
arXiv 2406.07524) for the forward process and the loss; LLaDA (Nie et al., "Large Language Diffusion
Models", arXiv 2502.09992, and its public generate.py / GUIDELINES.md) for the sampler, blocks and
guidance; Fast-dLLM (Wu et al., arXiv 2505.22618) for the confidence-threshold rule; DDCap (Zhu et al.,
"Exploring Discrete Diffusion Models for Image Captioning", arXiv 2211.11694) for captioning with a
discrete diffusion decoder cross-attending to image features. Written from the papers' descriptions;
no code is copied. Licence of this code: the project's (MIT). Paradigm: diffusion (non-autoregressive).

Package layout: config.py (fields + variants), process.py (forward process, loss, schedule: no
network), sampler.py (the decoding loop over a network callable), network.py (the transformer),
vocab.py (captions <-> token indices), seeds.py (per-image noise seeds), captioner.py (the contract),
stack.py (inference stacks: the network passes eager or compiled, fp32 or bf16), block_cache.py
(Fast-dLLM's block cache).

What follows which source:
- Forward process and loss (MDLM, linear schedule alpha_t = 1 - t; LLaDA's guidelines): t ~ U(eps, 1),
  eps = 1e-3, each token masked independently with probability t; cross-entropy on the masked
  positions only, weighted by 1/t, summed and divided by batch x L. MDLM's low-discrepancy sampling of
  t over a batch is on by default (`low_discrepancy`; the same expectation with less variance).
- Parameterisation (MDLM's SUBS): [MASK] is an input only (never predicted); committed tokens are
  carried over unchanged. No time conditioning (MDLM and LLaDA: the mask count tells the level).
- Fixed length L = 24 (LaDiC's setting): the word pieces, [SEP] as the end, [PAD]s; end and padding are
  ordinary tokens the model predicts. LaDiC's leading [CLS] is dropped (a constant, it would cost a
  position), so up to 23 word pieces fit where LaDiC keeps 22.
- Sampler (LLaDA's low-confidence remasking): each step predicts every masked position (argmax of the
  logits + temperature x Gumbel noise, in float64 as LLaDA), its confidence is the softmax probability
  of that token, and the most confident are committed: n masked over s steps gives n // s per step,
  the remainder to the first steps, all committed at the last step. Committed tokens are never
  re-masked. steps = L is DDCap-style one token per step; steps = 1 is one-shot.
- Random remasking (knob `remasking`: "low_confidence" | "random"; LLaDA's remasking='random'): the
  positions a step commits are chosen uniformly at random instead of by confidence. At temperature 1
  (tokens drawn from the model's distribution) this is MDLM's ancestral sampler, with one difference:
  MDLM unmasks each masked position independently with probability (alpha_s - alpha_t) / (1 - alpha_t),
  so the count per step is random, where LLaDA's fixed count per step (the schedule above) is kept here,
  so the steps and the network evaluations are those of the other samplers. It is the sampling probe's
  "ancestral" method (the diversity phase); "seeds" keeps low-confidence remasking with Gumbel noise.
  Random remasking needs the step schedule (threshold 0).
- Threshold rule (Fast-dLLM): commit every masked position above `threshold`, at least the most
  confident one; the step count depends on the data and `generate` reports it per caption.
- Semi-autoregressive blocks (LLaDA): L split into `blocks` contiguous blocks, left to right, the steps
  split evenly over the blocks (LLaDA asks for divisibility; here the remainder goes to the first
  blocks, and a block gets at least one step: fewer steps than blocks are raised to one per block).
- Guidance (classifier-free, as LLaDA's logits form): logits = (1 + w) cond - w uncond, both passes in
  one batched forward; in training the image is replaced with probability 0.1 by a learned null memory
  (one vector at every image position, so the shapes stay those of the image tokens). LaDiC feeds a
  zero image through the encoder instead; the null memory does not depend on the encoder.
- Network (DDCap's layout: a BERT-style bidirectional transformer cross-attending to image tokens):
  pre-LN layers of self-attention (no mask), cross-attention to the image tokens, GELU FFN; learned
  positions; an untied output head over the real tokens.

Speed: the image encoder runs once per call and the image tokens' cross-attention keys/values (and
the null memory's) are computed once per call, not per step; shapes are static inside the loop.
Inference stacks (stack.py): eager or compiled (torch.compile of the per-step forward and of the image
K/V projection), weights in fp32 or bf16 (the sampler's logits, probabilities and confidences stay
float32, its Gumbel noise float64); CUDA-graph capture of the loop is not offered.

Block cache (knob `block_cache`, off by default; block_cache.py), Fast-dLLM's prefix cache: with
`blocks` > 1, a block's self-attention keys/values are computed once, at the first step of the next
block, and reused by every later step, which then runs only over the positions from the current block
on. An approximation, since the network is bidirectional: a cached block's hidden states no longer see
the later positions change (they saw them as the next block began: all [MASK]); the first block, and
the second block's first step, decode exactly as without the cache. Each cached block is stored once,
never refreshed (Fast-dLLM refreshes the whole prefix at every block). With `blocks: 1` nothing is
cached and decoding is unchanged. A network evaluation stays one denoiser call per step (x 2 with
guidance), each over fewer positions with the cache: `decode_cost` and `generate` count it the same.
dKV-Cache's caching of committed positions inside a block (refreshed periodically) is not implemented.
Measured (2-core AMD EPYC VM, CPU, fp32 eager; the three mdm-mini models of the shapes suite, default
decoding: 24 steps in 2 blocks) on shapes' validation split, 100 images, with
`python -m bench.tune JOB_DIR --grid block_cache=false,true`:

    seed 0                                          seed 1
    | block_cache | CIDEr | BLEU-4 | network evals |  | block_cache | CIDEr | BLEU-4 | network evals |
    |---|---|---|---|                                 |---|---|---|---|
    | False | 190.1 | 52.4 | 24.0 |                    | True | 167.9 | 49.0 | 24.0 |
    | True | 190.1 | 52.4 | 24.0 |                     | False | 166.1 | 48.7 | 24.0 |
    seed 2
    | block_cache | CIDEr | BLEU-4 | network evals |
    |---|---|---|---|
    | False | 176.9 | 48.1 | 24.0 |
    | True | 176.9 | 48.1 | 24.0 |

The cache changed 0, 3 and 0 of the 100 captions (seeds 0, 1, 2; CIDEr +1.8 on seed 1, the same on the
others): no quality cost measurable at this length and size. Longer captions or more blocks may differ.
Batch-1 latency, median ms per caption over 8 validation images x 20 interleaved rounds, one torch
thread, on a shared machine (load average 6-7 on its 2 cores), `python benchmarks/mdm_block_cache.py
JOB_DIR ... --images 8 --rounds 20`, two runs: no cache 47.8 / 51.6, 49.6 / 53.1, 30.4 / 30.5 ms; with
the cache 44.3 / 50.4, 47.1 / 48.2, 28.3 / 28.4 ms (seeds 0, 1, 2): 1.02-1.10x. At L = 24 and this
width the per-step cost is mostly fixed overhead, so halving the positions of the second block's steps
saves little, as the Fast-dLLM and dKV-Cache reports lead one to expect at short lengths.

Deviations, and choices the sources leave open:
- Steps above L (or above a block's length) are capped: a step that can commit nothing would still cost
  a network evaluation. `decode_cost` and `generate` report the steps actually run (x 2 with guidance).
- Noise: one generator per image seeded from (seed, the image's preprocessed pixels) (models.seeding),
  drawn only on the row's own steps (a step counter per row: under the threshold rule a row that
  finished a block waits while its batch mates go on), so a caption never depends on its batch mates.
  With temperature 0 and low-confidence remasking (the defaults) decoding draws nothing.
- Captions: the words before the first [SEP] ([PAD] skipped), consecutive repeated words collapsed per
  caption, as LaDiC's post-process; `caption_raw` keeps the repeats.
- Injection probe: the uninjected decoding is rerun (same seed, same tokens) to find the token
  positions of word k and the steps; the wrong word's pieces are committed there (pieces beyond the
  original word's are cut, spare positions get [PAD]) and decoding continues with the same noise
  draws. Levels (`injection_levels`), in the caption's own steps: None, before the step that committed
  the word's first piece (the analogue of an autoregressive model's "when generated"); 0.2 / 0.5 / 0.8,
  at that fraction of the steps of the block holding that piece (a fraction of all the steps would,
  with two blocks, land at 0.5 and 0.8 on words the first block had already committed).

Variants (image encoders and vocabularies of LaDiC's variants, so mdm-X vs ladic-X isolates the decoder):
- mdm-base: ladic-base's frozen BLIP ViT-B/16 (224 px, 197 tokens of 768) and bert-base-uncased's
  30522-id WordPiece vocabulary (read offline from the MiniLM package, which ships it); a 12-layer x 768
  transformer (12 heads, FFN 3072, dropout 0.1); 24 steps in 2 blocks by default. For the coco and
  flickr30k suites (GPU).
- mdm-mini: ladic-mini's conv encoder (64 px, 8x8 tokens of 128, trained from scratch) and vocabulary
  (bert-base-uncased's WordPiece restricted to the ids of the training captions, lm_vocab="train");
  a 3-layer x 128 transformer (4 heads, FFN 512, no dropout); 24 steps in 2 blocks by default, no
  unconditional branch (cfg_drop_prob 0). For the shapes suite, which trains it 12 epochs at batch 32,
  lr 1e-3, with gradient clipping at 1.0 and an EMA of 0.99 (bench.yaml; the measurements below).
- mdm-tiny: ladic-tiny's 32 px conv encoder and word vocabulary, 2 layers x 32, for tests.

Why two blocks by default (mdm-base and mdm-mini): every target is padded to L, so [SEP] and [PAD]
are the easiest predictions and, under the plain schedule (one block), the most confident ones: the
tail is committed first and fixes a short length before the words are chosen, the "too short / EOS
overflow" failure LLaDA meets with its padded instruction data and answers with semi-autoregressive
blocks. Measured on shapes' validation split (100 images, one CPU thread per job; mdm-mini trained 8
epochs at batch 32, lr 1e-3): with one block its captions average 8.1 words against 12.7 for the
references, with two blocks 11.6; CIDEr, one block -> two blocks: 120 -> 183, 125 -> 167, 111 -> 153
(seeds 0, 1, 2), where the nearest-neighbour reference scores 160. Three blocks scored below two for 5
of 7 trained models and above for 2 (by 3 and 10 points). Trained 12 epochs (the shapes suite's
setting) with two blocks: 190, 168, 177. Learning rate: 3e-3 (the earlier setting) gave 84 after 6
epochs and 156 after 12 (one block, seed 0); 1e-3 reaches lower training losses at batch 32 and 16.
`blocks` stays a knob: `blocks: 1` gives LLaDA's plain low-confidence schedule.

Training as MDLM trains, and guidance (mdm-mini on shapes' validation split, 100 images, seeds 0 / 1 / 2,
CIDEr x100, 12 epochs at batch 32, lr 1e-3, 24 steps in 2 blocks; the nearest-neighbour reference scores
158.7 there; `bench run --suite shapes --set "suites.shapes.phases=[train]" --set
"suites.shapes.models=[{name: mdm-mini, train: {...}, overrides: {...}}]"`, then `python -m bench.tune
JOB_DIR --grid guidance=0,0.5,1,2`):

| training | CIDEr (guidance 0) |
|---|---|
| as before: no clipping, no EMA, cfg_drop_prob 0.1 | 190.1 / 166.1 / 176.9 |
| cfg_drop_prob 0 (no unconditional branch) | 189.2 / 180.7 / 181.7 |
| gradient clipping at 1.0 + EMA 0.99 (cfg_drop_prob 0.1) | 200.0 / 188.5 / 219.4 |
| the same in 10 epochs | 210.5 / 186.0 / 149.1 |
| clipping + EMA, cfg_drop_prob 0 (the shapes suite's, from its jobs) | 195.9 / 182.7 / 205.8 |
| the same with an EMA of 0.995 | 197.6 / 178.3 / 207.6 |
Guidance on the first model: w = 0 / 0.5 / 1 / 2 gave 190.1 / 182.8 / 175.1 / 150.5 (seed 0), 166.1 /
163.6 / 165.5 / 165.3 (seed 1), 176.9 / 155.9 / 142.9 / 133.5 (seed 2): guidance never helped and costs
twice the network evaluations, so the 10% of training spent on the unconditional branch bought nothing;
without it the seeds are higher on average and closer together. Clipping and the EMA (MDLM's recipe,
0.99 for a run of about 2,000 steps: bench/config_phases.py) raised every seed by 10 to 43 points;
cut to 10 epochs, one seed fell below the reference; a slower EMA (0.995) spread the seeds more
(sd 14.9 against 11.6) at the same mean, so 0.99 stays. The shapes suite trains mdm-mini 12 epochs with
both, and the variant trains no unconditional branch (cfg_drop_prob 0; asking such a model for
guidance is an error); mdm-base keeps LLaDA's 0.1.
"""
