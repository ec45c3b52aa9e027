import torch

from reference_impls.pixelcnn import GatedLayer, GatedPixelCNN, MaskedConv2d, OriginalPixelCNN, gate

H = W = 8


def dependence(model, i, j, **kw):
    """(H, W) bool: which input pixels the logits at (i, j) have a nonzero gradient with respect to."""
    x = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(0), requires_grad=True)
    model(x, **kw)[0, :, i, j].sum().backward()
    return x.grad[0, 0].abs() > 0


def test_gated_output_at_a_pixel_depends_on_no_pixel_at_or_after_it_in_raster_order():
    torch.manual_seed(0)
    model = GatedPixelCNN(channels=8, n_layers=4, k=3)
    for i, j in [(0, 0), (0, 5), (3, 0), (4, 4), (7, 7)]:
        dep = dependence(model, i, j)
        for r in range(H):
            for c in range(W):
                if r * W + c >= i * W + j:
                    assert not dep[r, c], f"logits at {(i, j)} see pixel {(r, c)}"


def test_gated_output_depends_on_the_pixel_left_and_the_pixels_above():
    torch.manual_seed(0)
    dep = dependence(GatedPixelCNN(channels=8, n_layers=4, k=3), 4, 4)
    assert dep[4, 3] and dep[3, 4] and dep[3, 3] and dep[3, 5]


def test_gated_stacks_see_the_blind_spot_the_original_pixelcnn_misses():
    torch.manual_seed(0)
    gated = dependence(GatedPixelCNN(channels=8, n_layers=4, k=3), 4, 3)
    original = dependence(OriginalPixelCNN(channels=8, n_layers=4, k=3), 4, 3)
    # the original never looks outside the causal past either
    assert not original[4, 3:].any() and not original[5:].any()
    blind = gated & ~original
    assert blind.any()
    # every missed pixel lies above and to the right of (4, 3): the blind spot
    rows, cols = blind.nonzero(as_tuple=True)
    assert (rows < 4).all() and (cols > 3).all()
    # a concrete one: two rows up and three columns right is seen only by the gated model
    assert gated[2, 6] and not original[2, 6]
    # and the original sees nothing that the gated model misses in this window
    assert not (original & ~gated).any()


def test_masked_conv_kernel_masks_match_types_a_and_b():
    a = MaskedConv2d("A", 1, 1, 3).mask[0, 0]
    b = MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_gate_is_tanh_of_first_half_times_sigmoid_of_second_half():
    a = torch.tensor([0.3, -1.2, 2.0, 0.5]).view(1, 4, 1, 1)
    expected = torch.tensor(
        [
            torch.tanh(torch.tensor(0.3)) * torch.sigmoid(torch.tensor(2.0)),
            torch.tanh(torch.tensor(-1.2)) * torch.sigmoid(torch.tensor(0.5)),
        ]
    )
    torch.testing.assert_close(gate(a).flatten(), expected)


def test_conditioning_vector_is_added_inside_both_gates():
    torch.manual_seed(0)
    layer = GatedLayer(channels=4, k=3, first=False, cond_dim=3)
    v, h, cond = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5), torch.randn(1, 3)
    v_out, h_out = layer(v, h, cond)
    # recompute by hand: the bias V^T h enters the pre-activations of both stacks
    cv, ch = layer.cond(cond)[:, :, None, None].chunk(2, dim=1)
    v_pre = layer.v_conv(torch.nn.functional.pad(v, (1, 1, 1, 0))) + cv
    torch.testing.assert_close(v_out, gate(v_pre))
    v_pre_nocond = v_pre - cv
    h_pre = (
        layer.h_conv(torch.nn.functional.pad(h, (1, 0, 0, 0)))
        + layer.v_to_h(torch.nn.functional.pad(v_pre_nocond, (0, 0, 1, 0))[:, :, :-1])
        + ch
    )
    torch.testing.assert_close(h_out, layer.h_out(gate(h_pre)) + h)


def test_conditioned_model_output_changes_with_the_condition_but_stays_causal():
    torch.manual_seed(0)
    model = GatedPixelCNN(channels=8, n_layers=3, k=3, cond_dim=5)
    x = torch.rand(1, 1, H, W)
    c1, c2 = torch.randn(1, 5), torch.randn(1, 5)
    assert (model(x, c1) - model(x, c2)).abs().max() > 1e-3
    dep = dependence(model, 2, 2, cond=c1)
    assert not dep[2, 2:].any() and not dep[3:].any()
