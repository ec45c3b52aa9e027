import pytest
import torch

from reference_impls import ddpm
from reference_impls.video_ldm import AlphaBlend, ImageDenoiser, VideoDenoiser


@pytest.mark.parametrize("temporal", ["attention", "conv"])
def test_alpha_one_gives_the_image_model_frame_by_frame(temporal):
    torch.manual_seed(0)
    image = ImageDenoiser(channels=2, ch=8, depth=2, num_steps=50)
    video = VideoDenoiser(image, temporal=temporal)
    for blend in video.blends:
        blend.mix_logit.data.fill_(float("inf"))  # alpha = 1 exactly
    z, t = torch.randn(2, 5, 2, 4, 4), torch.tensor([3, 30])
    out = video(z, t)
    for f in range(5):
        torch.testing.assert_close(out[:, f], image(z[:, f], t))


def test_temporal_layers_mix_frames_only_when_alpha_is_below_one():
    torch.manual_seed(0)
    video = VideoDenoiser(ImageDenoiser(channels=2, ch=8, num_steps=50), init_logit=0.0)
    z, t = torch.randn(1, 4, 2, 4, 4), torch.tensor([10])
    z2 = z.clone()
    z2[:, 0] += 1.0  # perturb the first frame only
    assert (video(z2, t)[:, 3] - video(z, t)[:, 3]).abs().max() > 1e-4
    for blend in video.blends:
        blend.mix_logit.data.fill_(float("inf"))
    torch.testing.assert_close(video(z2, t)[:, 3], video(z, t)[:, 3])


def test_blend_is_the_alpha_convex_combination():
    blend = AlphaBlend(init_logit=0.4)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    alpha = torch.sigmoid(torch.tensor(0.4))
    torch.testing.assert_close(blend(a, b), alpha * a + (1 - alpha) * b)


def test_spatial_weights_get_no_gradient_and_do_not_move_in_training():
    torch.manual_seed(0)
    image = ImageDenoiser(channels=2, ch=8, num_steps=50)
    video = VideoDenoiser(image)
    frozen = [p.clone() for p in image.parameters()]
    s = ddpm.Schedule(ddpm.linear_betas(50, 1e-4, 0.2))
    opt = torch.optim.Adam(video.temporal_parameters(), lr=1e-2)
    x = torch.randn(2, 3, 2, 4, 4)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        ddpm.eps_loss(s, video, x, g).backward()
        assert all(p.grad is None for p in image.parameters())
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in video.temporal_parameters())
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, image.parameters(), strict=True))
