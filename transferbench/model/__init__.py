"""Stage 2, the model: the frozen backbone and how a soft prompt is trained and read on it.

`backbone` loads a packaged or hub model (offline from wheels by default) and says where its FFN
neurons are; `prompt` is the template, the verbalizer and the plain prompt-tuning loop; `kernels`
and `precision` decide how this hardware computes (attention and evaluation kernels, bf16 or
fp32); `neurons` holds the skill-neuron formulas over activations. Imports only the foundation
modules (`transferbench.errors`, `registry`, `store`, `progress`, `processes`) and `tasks`.
"""
