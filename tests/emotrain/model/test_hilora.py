"""HiLoRA: Eq. 3 by hand, per-sample routing, gradients, state dicts, on the tiny SD UNet."""

import pytest
import torch

from emocurate.core.emotions import EMOTIONS, EMOART_EMOTIONS
from emotrain.model.hilora import (HiLoRALinear, add_hilora, clear_routing, hilora_config, hilora_layers, hilora_parameters,
                             hilora_state_dict, load_hilora_state_dict, one_hot_weights, routing, set_routing)


@pytest.fixture(scope="module")
def unet_folder():
    from emocurate.core.tiny import resolve

    return resolve("tiny:sd")


def load_unet(folder):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()


def randomise(model, seed=0, std=0.2):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hilora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def unet_inputs(batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, 16, 16, generator=gen)  # (B, 4, h, w)
    text = torch.randn(batch, 7, 32, generator=gen)  # (B, tokens, cross_attention_dim)
    return sample, torch.tensor([10, 500, 900, 3, 250, 700][:batch]), text


def run(unet, sample, t, text):
    return unet(sample, t, encoder_hidden_states=text).sample


def test_eq3_by_hand_one_layer():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 12)
    layer = HiLoRALinear(base, EMOTIONS, rank=4, alpha=8.0)  # scale 2
    randomise(layer)
    x = torch.randn(3, 5, 16)  # (B, N, in)
    labels = ["amusement", "fear", "awe"]
    polarity = {"amusement": "positive", "fear": "negative", "awe": "positive"}
    with routing(layer, one_hot_weights(layer, labels)):
        y = layer(x)
    for b, emotion in enumerate(labels):
        A_e, B_e = layer.adapter(f"emotion.{emotion}")  # (r, in), (r, out)
        A_p, B_p = layer.adapter(f"polarity.{polarity[emotion]}")
        expected = x[b] @ base.weight.T + base.bias + 2.0 * (x[b] @ A_p.T @ B_p) + 2.0 * (x[b] @ A_e.T @ B_e)
        torch.testing.assert_close(y[b], expected, atol=1e-5, rtol=1e-5)
    # the shared fast path (one emotion for the whole batch) and a 2-D input agree with the same formula
    with routing(layer, one_hot_weights(layer, ["fear"] * 3)):
        y_shared = layer(x)
        y_2d = layer(x[:, 0])
    (A_e, B_e), (A_p, B_p) = layer.adapter("emotion.fear"), layer.adapter("polarity.negative")
    delta = 2.0 * (x @ A_p.T @ B_p + x @ A_e.T @ B_e)
    torch.testing.assert_close(y_shared, base(x) + delta, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_2d, (base(x) + delta)[:, 0], atol=1e-5, rtol=1e-5)


def test_mixed_weights_sum_the_adapter_updates():
    torch.manual_seed(1)
    base = torch.nn.Linear(8, 6)
    layer = HiLoRALinear(base, EMOART_EMOTIONS, rank=2, alpha=2.0)
    randomise(layer, seed=1)
    x = torch.randn(2, 3, 8)
    w = torch.zeros(2, len(EMOART_EMOTIONS))
    w[0, EMOART_EMOTIONS.index("amusement")] = 0.25
    w[0, EMOART_EMOTIONS.index("sadness")] = 0.75  # row 1 stays zero: base weights only
    with routing(layer, w):
        y = layer(x)

    def delta(name):
        A, B = layer.adapter(name)
        return x[0] @ A.T @ B

    expected = (base(x[0]) + 0.25 * delta("emotion.amusement") + 0.75 * delta("emotion.sadness")
                + 0.25 * delta("polarity.positive") + 0.75 * delta("polarity.negative"))
    torch.testing.assert_close(y[0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[1], base(x[1]))


def test_add_hilora_replaces_attention_projections_and_freezes_base(unet_folder):
    unet = load_unet(unet_folder)
    base_keys = set(unet.state_dict())
    names = add_hilora(unet, ["awe", "amusement", "fear"], rank=4)
    assert names and all(n.split(".transformer_blocks.")[1].split(".", 2)[2] in ("to_q", "to_k", "to_v", "to_out.0")
                         for n in names)
    assert len(names) == 4 * sum(1 for n, _ in unet.named_modules() if n.endswith(".attn1") or n.endswith(".attn2"))
    layer = dict(hilora_layers(unet))[names[0]]
    assert layer.emotions == ("amusement", "awe", "fear")  # EmoSet order, whatever order was given
    assert layer.adapters == ("emotion.amusement", "emotion.awe", "emotion.fear", "polarity.positive", "polarity.negative")
    assert len(layer.lora_A) == len(layer.lora_B) == 5  # one parameter per adapter and side
    assert all(tuple(a.shape) == (4, layer.in_features) for a in layer.lora_A)
    assert all(tuple(b.shape) == (4, layer.out_features) for b in layer.lora_B)
    assert not any(b.any() for b in layer.lora_B) and all(a.any() for a in layer.lora_A)
    trainable = {id(p) for p in unet.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in hilora_parameters(unet)}
    assert base_keys <= set(unet.state_dict())  # the base weights keep their keys
    with pytest.raises(ValueError, match="already has HiLoRA"):
        add_hilora(unet, ["awe"])
    with pytest.raises(ValueError, match="unknown emotion"):
        add_hilora(load_unet(unet_folder), ["glee"])
    with pytest.raises(ValueError, match="both False"):
        add_hilora(load_unet(unet_folder), ["awe"], emotion_loras=False, polarity_loras=False)


def test_no_routing_and_zero_b_equal_the_base_unet(unet_folder):
    unet = load_unet(unet_folder)
    sample, t, text = unet_inputs(2)
    with torch.no_grad():
        reference = run(unet, sample, t, text)
        add_hilora(unet, EMOTIONS)
        with routing(unet, one_hot_weights(unet, ["awe", "fear"])):  # fresh adapters: B == 0
            torch.testing.assert_close(run(unet, sample, t, text), reference, atol=0, rtol=0)
        randomise(unet)
        with routing(unet, one_hot_weights(unet, ["awe", "fear"])):
            assert not torch.allclose(run(unet, sample, t, text), reference, atol=1e-3)
        torch.testing.assert_close(run(unet, sample, t, text), reference, atol=0, rtol=0)  # routing cleared


def test_mixed_batch_equals_per_sample_runs(unet_folder):
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOTIONS)
    randomise(unet)
    labels = ["awe", "anger", "contentment", "awe"]
    sample, t, text = unet_inputs(len(labels))
    with torch.no_grad():
        set_routing(unet, one_hot_weights(unet, labels))
        batched = run(unet, sample, t, text)
        for b, emotion in enumerate(labels):
            set_routing(unet, one_hot_weights(unet, [emotion]))
            single = run(unet, sample[b:b + 1], t[b:b + 1], text[b:b + 1])
            torch.testing.assert_close(batched[b:b + 1], single, atol=1e-5, rtol=1e-4)
        clear_routing(unet)


def grads_after_step(unet, labels, checkpointing=False):
    for p in hilora_parameters(unet):
        p.grad = None
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    sample, t, text = unet_inputs(len(labels))
    with routing(unet, one_hot_weights(unet, labels)):
        run(unet, sample, t, text).square().mean().backward()
    unet.eval()
    return {name: {f"{adapter}.{side}": getattr(layer, f"lora_{side}")[i].grad for i, adapter in enumerate(layer.adapters)
                   for side in "AB"}
            for name, layer in hilora_layers(unet)}


def test_gradients_reach_only_the_routed_adapters(unet_folder):
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOTIONS)
    randomise(unet)  # B != 0 so that A gets gradients too
    for labels, polarities in ((["awe", "fear"], {"positive", "negative"}), (["amusement", "awe", "amusement"], {"positive"})):
        present = {f"emotion.{e}" for e in labels} | {f"polarity.{p}" for p in polarities}
        for name, grads in grads_after_step(unet, labels).items():
            assert len(grads) == 2 * 10
            for key, g in grads.items():
                adapter = key.rsplit(".", 1)[0]
                if adapter in present:
                    assert g is not None and bool(g.abs().sum() > 0), f"{name}.{key} grad for batch {labels}"
                else:  # not even a zero gradient: optimizers skip the parameter entirely
                    assert g is None, f"{name}.{key} got a gradient for batch {labels}"
    assert all(p.grad is None for n, p in unet.named_parameters() if ".lora_A." not in n and ".lora_B." not in n)


def test_gradient_checkpointing_gives_the_same_gradients(unet_folder):
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOTIONS)
    randomise(unet)
    plain = grads_after_step(unet, ["awe", "fear"])
    plain = {n: {k: None if g is None else g.clone() for k, g in gs.items()} for n, gs in plain.items()}
    checkpointed = grads_after_step(unet, ["awe", "fear"], checkpointing=True)
    for name in plain:
        for k in plain[name]:
            if plain[name][k] is None:
                assert checkpointed[name][k] is None
            else:
                torch.testing.assert_close(checkpointed[name][k], plain[name][k], atol=1e-6, rtol=1e-5)
    # backward after the routing was cleared would recompute without adapters: a clear error instead
    unet.train()
    sample, t, text = unet_inputs(2)
    with routing(unet, one_hot_weights(unet, ["awe", "fear"])):
        loss = run(unet, sample, t, text).square().mean()
    with pytest.raises(RuntimeError, match="gradient checkpointing"):
        loss.backward()


def test_bf16_autocast_runs_close_to_fp32(unet_folder):
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOTIONS)
    randomise(unet)
    sample, t, text = unet_inputs(2)
    with torch.no_grad(), routing(unet, one_hot_weights(unet, ["awe", "sadness"])):
        full = run(unet, sample, t, text)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = run(unet, sample, t, text)
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().mean() < 0.05 * full.abs().mean()


def test_routing_errors(unet_folder):
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOART_EMOTIONS)
    sample, t, text = unet_inputs(2)
    with pytest.raises(ValueError, match=r"shape \(batch, 6\)"):
        set_routing(unet, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="no HiLoRA adapter"):
        one_hot_weights(unet, ["excitement"])
    with pytest.raises(ValueError, match="full batch"), torch.no_grad():
        with routing(unet, one_hot_weights(unet, ["awe"])):
            run(unet, sample, t, text)  # classifier-free guidance style: 2 samples, weights for 1


def test_ablation_switches(unet_folder):
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOTIONS, emotion_loras=False)
    keys = hilora_state_dict(unet)
    assert keys and all(".polarity." in k for k in keys)
    assert hilora_config(unet)["emotion_loras"] is False
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOTIONS, polarity_loras=False, target_modules=("attn2.to_k",))
    keys = hilora_state_dict(unet)
    assert keys and all(".emotion." in k and ".attn2.to_k." in k for k in keys)


def test_state_dict_round_trip_and_strict_errors(unet_folder):
    unet = load_unet(unet_folder)
    add_hilora(unet, EMOTIONS, rank=4)
    randomise(unet, seed=3)
    state = hilora_state_dict(unet)
    name = next(n for n, _ in hilora_layers(unet))
    layer = dict(hilora_layers(unet))[name]
    a = state[f"{name}.emotion.awe.lora_A.weight"]
    b = state[f"{name}.polarity.positive.lora_B.weight"]
    assert tuple(a.shape) == (4, layer.in_features) and tuple(b.shape) == (layer.out_features, 4)

    other = load_unet(unet_folder)
    add_hilora(other, EMOTIONS, rank=4)
    load_hilora_state_dict(other, state)
    sample, t, text = unet_inputs(2)
    with torch.no_grad():
        for model in (unet, other):
            set_routing(model, one_hot_weights(model, ["awe", "disgust"]))
        torch.testing.assert_close(run(other, sample, t, text), run(unet, sample, t, text), atol=0, rtol=0)

    with pytest.raises(ValueError, match="missing key"):
        load_hilora_state_dict(other, {k: v for k, v in state.items() if "to_v" not in k})
    with pytest.raises(ValueError, match="unexpected key"):
        load_hilora_state_dict(other, {**state, "extra.lora_A.weight": a})
    with pytest.raises(ValueError, match="emotion-set mismatch"):
        six = load_unet(unet_folder)
        add_hilora(six, EMOART_EMOTIONS)
        load_hilora_state_dict(six, state)
    with pytest.raises(ValueError, match="shapes do not match"):
        rank8 = load_unet(unet_folder)
        add_hilora(rank8, EMOTIONS, rank=8)
        load_hilora_state_dict(rank8, state)


def test_works_inside_ddp(unet_folder, tmp_path, monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # one rank, loopback only
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        unet = load_unet(unet_folder)
        names = add_hilora(unet, EMOTIONS)
        randomise(unet)
        wrapped = DistributedDataParallel(unet.train(), find_unused_parameters=True)  # as train.py
        assert [n for n, _ in hilora_layers(wrapped)] == names  # names of the bare UNet, not "module.<name>"
        sample, t, text = unet_inputs(2)
        with routing(wrapped, one_hot_weights(wrapped, ["awe", "fear"])):
            wrapped(sample, t, encoder_hidden_states=text).sample.square().mean().backward()
        routed = {"emotion.awe", "emotion.fear", "polarity.positive", "polarity.negative"}
        for _, layer in hilora_layers(wrapped):
            for i, adapter in enumerate(layer.adapters):
                for p in (layer.lora_A[i], layer.lora_B[i]):
                    # DDP leaves a parameter no rank used without a gradient, so the optimizer skips it
                    assert (p.grad is not None) == (adapter in routed), adapter
        assert any(bool(p.grad.abs().sum() > 0) for p in hilora_parameters(wrapped) if p.grad is not None)
        assert set(hilora_state_dict(wrapped)) == set(hilora_state_dict(unet))
    finally:
        dist.destroy_process_group()


def _optimizers():
    """Every optimizer train.py can build (AdamW, in each of torch's implementations), and two more for good measure."""
    return {
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2),
        "adamw-foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2, foreach=True),
        "adamw-fused": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2, fused=True),
        "adam-l2": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
        "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=1e-2),
    }


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(_optimizers()))
def test_fear_step_leaves_awe_bit_identical_after_awe_built_optimizer_state(unet_folder, name, precision):
    """Paper: only the routed emotion's and polarity's LoRAs are updated. Awe steps give awe (and positive) momentum
    and second moments; a fear-only step must then leave awe's and positive's A and B, and their optimizer state,
    bit-identical (no momentum carry-over, no weight decay), while fear's and negative's do move."""
    unet = load_unet(unet_folder).train()
    add_hilora(unet, EMOTIONS)
    randomise(unet, std=0.05)
    params = hilora_parameters(unet)
    optimizer = _optimizers()[name](params)
    sample, t, text = unet_inputs(2)

    def step(labels):
        with routing(unet, one_hot_weights(unet, labels)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = run(unet, sample, t, text)
            out.float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step(["awe", "awe"])
    layers = dict(hilora_layers(unet))

    def snapshot(adapters):
        weights = {(n, a, s): getattr(layer, f"lora_{s}")[layer.adapters.index(a)].detach().clone()
                   for n, layer in layers.items() for a in adapters for s in "AB"}
        state = {(n, a, s, k): v.clone() for n, layer in layers.items() for a in adapters for s in "AB"
                 for k, v in optimizer.state[getattr(layer, f"lora_{s}")[layer.adapters.index(a)]].items()
                 if isinstance(v, torch.Tensor)}
        return weights, state

    awe_weights, awe_state = snapshot(["emotion.awe", "polarity.positive"])
    fear_weights, _ = snapshot(["emotion.fear", "polarity.negative"])
    assert awe_state, "awe steps built optimizer state" if name != "sgd-momentum" else awe_state
    step(["fear", "fear"])
    after_weights, after_state = snapshot(["emotion.awe", "polarity.positive"])
    for key, value in awe_weights.items():
        assert torch.equal(after_weights[key], value), f"{key} moved in a fear-only step ({name}, {precision})"
    for key, value in awe_state.items():
        assert torch.equal(after_state[key], value), f"optimizer state {key} changed in a fear-only step"
    moved, _ = snapshot(["emotion.fear", "polarity.negative"])
    assert any(not torch.equal(moved[k], v) for k, v in fear_weights.items()), "the routed adapters did not train"
