"""MotionCharacter's training losses as pure functions on tensors (paper Sec. "Training", Eq. 4 and 9-11).

    M_norm = clip(f_fg / 255 + delta, 1, 1 + delta)                           (Eq. 9)
    L_R    = mean(M_norm * (eps - eps_hat)^2)                                 (Eq. 10)
    L_id   = 1 - mean_i cos(phi(I), phi(X_i))                                 (Eq. 4)
    L      = L_R + lambda_id * L_id                                           (Eq. 11)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def region_weights(flow: torch.Tensor, delta: float, size: tuple[int, int], flow_scale: float = 1.0) -> torch.Tensor:
    """Eq. 9. Foreground flow magnitudes ``flow`` (b, f, h0, w0) in pixels per step (the shards' uint8 maps, one per
    frame) -> weights (b, 1, f, h, w) in [1, 1 + delta] at latent size ``(h, w)`` (bilinear when sizes differ).
    ``flow_scale`` multiplies the maps first (``loss.region_flow_scale``: the paper's 8-bit maps are not pixels)."""
    weights = torch.clamp(flow.float() * flow_scale / 255.0 + delta, 1.0, 1.0 + delta)  # (b, f, h0, w0)
    if weights.shape[-2:] != tuple(size):
        weights = F.interpolate(weights, size=size, mode="bilinear", align_corners=False)
    return weights[:, None]  # (b, 1, f, h, w): broadcast over latent channels


def region_aware_loss(model_pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 10. ``model_pred``, ``target`` (b, c, f, h, w); ``weights`` broadcastable to them (``region_weights``).
    With weights of ones this is ``F.mse_loss(model_pred, target)``. Computed in float32."""
    return (weights * (model_pred.float() - target.float()) ** 2).mean()


def predict_x0(noisy_latents: torch.Tensor, model_pred: torch.Tensor, timesteps: torch.Tensor,
               alphas_cumprod: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The DDIM estimate of the clean latents, x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) for epsilon prediction,
    x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v for v-prediction. Latents (b, c, f, h, w), timesteps (b,)."""
    a = alphas_cumprod.to(noisy_latents.device)[timesteps].float().view(-1, 1, 1, 1, 1)  # (b, 1, 1, 1, 1)
    x_t, pred = noisy_latents.float(), model_pred.float()
    if prediction_type == "epsilon":
        return (x_t - (1 - a).sqrt() * pred) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * pred
    raise ValueError(f"Unknown prediction type {prediction_type}")


def crop_faces(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable square crops: ``frames`` (n, 3, H, W), ``boxes`` (n, 4) as [x0, y0, x1, y1] in 0..1 of the
    frame -> (n, 3, size, size), with ``affine_grid``/``grid_sample`` (torchvision's roi_align is not in every
    build)."""
    n = frames.shape[0]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) - 1, (boxes[:, 1] + boxes[:, 3]) - 1  # centres in [-1, 1]
    sx, sy = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]  # extents as fractions of the frame (= grid scale)
    theta = torch.zeros(n, 2, 3, device=frames.device, dtype=frames.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)  # (n, size, size, 2)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


def square_face_crops(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``crop_faces`` with each box made a square of its longer side about its centre, so the face is not stretched
    before the embedder (ArcFace sees squares): ``frames`` (n, 3, H, W), ``boxes`` (n, 4) in 0..1 -> (n, 3, size,
    size)."""
    centre, half = (boxes[..., :2] + boxes[..., 2:]) / 2, (boxes[..., 2:] - boxes[..., :2]).amax(-1, keepdim=True) / 2
    return crop_faces(frames, torch.cat([centre - half, centre + half], dim=-1), size)


def id_consistency_loss(reference_embeds: torch.Tensor, frame_embeds: torch.Tensor) -> torch.Tensor:
    """Eq. 4. ``reference_embeds`` phi(I) (b, d); ``frame_embeds`` phi(X_i) (b, k, d) for k generated frames
    -> scalar 1 - mean cosine similarity over samples and frames."""
    cos = F.cosine_similarity(reference_embeds[:, None, :].float(), frame_embeds.float(), dim=-1)  # (b, k)
    return 1.0 - cos.mean()
