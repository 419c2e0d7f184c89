"""Slow, obviously-correct NumPy references for the dense-network kernels.

Everything here is written for clarity, in float64, straight from the
formulas (explicit Jacobians, per-layer unpacking from the layout columns),
so the tests can compare the Numba kernels against it. Nothing here is fast.
"""

import numpy as np

from kernels.dropout import dropout_mask

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "rectifier", "maxout", "linear")


# --------------------------------------------------------------------------- layout
def unpack(params, layout):
    """List of (W, b) float64 copies, straight from the layout columns."""
    out = []
    for w_off, b_off, n_in, n_out, pieces, _ in layout:
        rows = n_out * pieces
        W = np.array(params[w_off:w_off + rows * n_in], dtype=np.float64).reshape(rows, n_in)
        b = np.array(params[b_off:b_off + rows], dtype=np.float64)
        out.append((W, b))
    return out


def pack(weights, layout, n_params):
    """Inverse of :func:`unpack`."""
    params = np.zeros(n_params)
    for (W, b), (w_off, b_off, *_rest) in zip(weights, layout):
        params[w_off:w_off + W.size] = W.ravel()
        params[b_off:b_off + b.size] = b
    return params


def weight_entries(layout, n_params):
    """Boolean vector, True on weight entries (not biases)."""
    mask = np.zeros(n_params, dtype=bool)
    for w_off, b_off, *_rest in layout:
        mask[w_off:b_off] = True
    return mask


# --------------------------------------------------------------------------- activations
def activate(name, z, pieces=1):
    z = np.asarray(z, dtype=np.float64)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "rectifier":
        return np.where(z > 0, z, 0.0)
    if name == "linear":
        return z.copy()
    if name == "maxout":
        return z.reshape(z.shape[0], -1, pieces).max(axis=2)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(name)


def activate_backward(name, z, a, da, pieces=1):
    """dL/dz given dL/da, for element-wise activations and maxout."""
    if name == "sigmoid":
        return da * a * (1.0 - a)
    if name == "tanh":
        return da * (1.0 - a * a)
    if name == "rectifier":
        return da * (z > 0)
    if name == "linear":
        return da.copy()
    if name == "maxout":
        batch, n_out = a.shape
        dz = np.zeros_like(z)
        grouped = z.reshape(batch, n_out, pieces)
        for i in range(batch):
            for j in range(n_out):
                winner = int(np.argmax(grouped[i, j]))  # first on ties
                dz[i, j * pieces + winner] = da[i, j]
        return dz
    raise ValueError(name)


def softmax_jacobian(p):
    """d p / d z for one row: diag(p) - p p^T."""
    return np.diag(p) - np.outer(p, p)


# --------------------------------------------------------------------------- losses
def point_loss(loss, r, huber_delta=1.0):
    """Element-wise loss of the residual r = h - y and its derivative d/dh."""
    if loss == "quadratic":
        return 0.5 * r * r, r
    if loss == "absolute":
        return np.abs(r), np.sign(r)
    if loss == "huber":
        inside = np.abs(r) <= huber_delta
        value = np.where(inside, 0.5 * r * r, huber_delta * (np.abs(r) - 0.5 * huber_delta))
        return value, np.where(inside, r, huber_delta * np.sign(r))
    raise ValueError(loss)


def output_loss(loss, act, z, h, y, huber_delta=1.0):
    """Per-sample losses (batch,) and delta = dL_i/dz_i (batch, n_out)."""
    if loss == "cross_entropy":
        if act == "softmax":
            log_p = z - z.max(axis=1, keepdims=True)
            log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
            return -(y * log_p).sum(axis=1), h - y
        # sigmoid outputs: independent binary cross-entropies
        values = -(y * np.log(h) + (1.0 - y) * np.log(1.0 - h)).sum(axis=1)
        return values, h - y
    values, dh = point_loss(loss, h - y, huber_delta)
    if act == "softmax":
        delta = np.stack([softmax_jacobian(h[i]).T @ dh[i] for i in range(h.shape[0])])
    else:
        delta = activate_backward(act, z, h, dh)
    return values.sum(axis=1), delta


# --------------------------------------------------------------------------- penalties
def penalty(params, layout, l1, l2):
    """Value and gradient of l1 Σ|W| + (l2/2) Σ W² over weights only."""
    mask = weight_entries(layout, params.shape[0])
    w = np.where(mask, np.asarray(params, dtype=np.float64), 0.0)
    value = l1 * np.abs(w).sum() + 0.5 * l2 * (w * w).sum()
    return value, l1 * np.sign(w) + l2 * w


def max_norm(params, layout, max_w2):
    """Copy of params with every incoming-weight row rescaled to ||w||^2 <= max_w2."""
    weights = unpack(params, layout)
    for W, _b in weights:
        for row in W:
            sq = (row * row).sum()
            if sq > max_w2:
                row *= np.sqrt(max_w2 / sq)
    return pack(weights, layout, params.shape[0])


def kl_sparsity(rho, rho_hat):
    return (rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))).sum()


# --------------------------------------------------------------------------- network
def layer_names(layout):
    from kernels.activations import ACTIVATION_CODES
    names = {code: name for name, code in ACTIVATION_CODES.items()}
    return [names[int(code)] for code in layout[:, 5]]


def forward(params, layout, X, masks=None):
    """Per layer: (input after dropout, z, a). masks[l] multiplies layer l's input."""
    names = layer_names(layout)
    src = np.asarray(X, dtype=np.float64)
    saved = []
    for layer, (W, b) in enumerate(unpack(params, layout)):
        inp = src * masks[layer] if masks is not None else src.copy()
        z = inp @ W.T + b
        a = activate(names[layer], z, int(layout[layer, 4]))
        saved.append((inp, z, a))
        src = a
    return saved


def masks_for(layout, drop, seed, epoch, rows):
    """The masks the trainer draws for these global rows (ratio 0 -> ones)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = []
    for layer, ratio in enumerate(drop):
        shape = (rows.shape[0], int(layout[layer, 2]))
        out.append(dropout_mask(shape, ratio, seed, epoch, layer, rows) if ratio > 0 else np.ones(shape))
    return out


def loss_and_grad(params, layout, X, Y, loss, l1=0.0, l2=0.0, huber_delta=1.0, beta=0.0, rho=0.05,
                  masks=None):
    """J = mean loss + penalty + beta * sum KL over sigmoid hidden layers, and dJ/dparams."""
    names = layer_names(layout)
    m = X.shape[0]
    saved = forward(params, layout, X, masks)
    weights = unpack(params, layout)
    values, delta = output_loss(loss, names[-1], saved[-1][1], saved[-1][2], np.asarray(Y, np.float64),
                                huber_delta)
    J = values.sum() / m
    delta = delta / m
    grads = [None] * len(weights)
    for layer in range(len(weights) - 1, -1, -1):
        inp = saved[layer][0]
        grads[layer] = (delta.T @ inp, delta.sum(axis=0))
        if layer == 0:
            break
        da = delta @ weights[layer][0]
        if masks is not None:
            da = da * masks[layer]
        below_z, below_a = saved[layer - 1][1], saved[layer - 1][2]
        if beta > 0 and names[layer - 1] == "sigmoid":
            rho_hat = below_a.mean(axis=0)
            J += beta * kl_sparsity(rho, rho_hat)
            da = da + beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat)) / m
        delta = activate_backward(names[layer - 1], below_z, below_a, da, int(layout[layer - 1, 4]))
    p_value, p_grad = penalty(params, layout, l1, l2)
    return J + p_value, pack(grads, layout, params.shape[0]) + p_grad


def kinks(params, layout, X, Y, loss, l1=0.0, huber_delta=1.0, masks=None):
    """Smallest distance of any input to a kink of the objective (inf when smooth).

    Rectifier |z|, maxout piece gaps, absolute |r|, huber ||r| - delta| and,
    with l1, |w|: central differences are exact only away from these.
    """
    names = layer_names(layout)
    saved = forward(params, layout, X, masks)
    gaps = [np.inf]
    for layer, (_inp, z, a) in enumerate(saved):
        if names[layer] == "rectifier":
            gaps.append(np.abs(z).min())
        if names[layer] == "maxout":
            pairs = z.reshape(z.shape[0], -1, int(layout[layer, 4]))
            gaps.append(np.abs(pairs[:, :, 0] - pairs[:, :, 1]).min())
    r = saved[-1][2] - np.asarray(Y, np.float64)
    if loss == "absolute":
        gaps.append(np.abs(r).min())
    if loss == "huber":
        gaps.append(np.abs(np.abs(r) - huber_delta).min())
    if l1 > 0:
        w = np.asarray(params, np.float64)[weight_entries(layout, params.shape[0])]
        gaps.append(np.abs(w).min())
    return float(min(gaps))


# --------------------------------------------------------------------------- training
def momentum(samples, start, ramp, stable):
    """h2o: linear ramp from momentum_start to momentum_stable over momentum_ramp samples."""
    if ramp <= 0 or samples >= ramp:
        return stable
    return start + (stable - start) * samples / ramp


def train(params, layout, X, Y, *, n_epochs, batch_size, loss, optimizer="sgd", rate=0.0, rate_annealing=0.0,
          rate_decay=1.0, momentum_start=0.0, momentum_ramp=0.0, momentum_stable=0.0, nesterov=False,
          rho=0.99, epsilon=1e-8, beta1=0.9, beta2=0.999, l1=0.0, l2=0.0, max_w2=np.inf, huber_delta=1.0,
          drop=None, seed=0):
    """Mini-batch training in sample order (no shuffle), one optimiser step per batch.

    Returns (params, epoch_loss) with epoch_loss the mean per-sample data loss
    seen during each epoch (before each batch's step).
    """
    theta = np.array(params, dtype=np.float64)
    m = X.shape[0]
    s0, s1 = np.zeros_like(theta), np.zeros_like(theta)
    samples, steps = 0, 0
    epoch_loss = []
    for epoch in range(n_epochs):
        total = 0.0
        for start in range(0, m, batch_size):
            rows = np.arange(start, min(m, start + batch_size))
            masks = masks_for(layout, drop, seed, epoch, rows) if drop is not None else None
            J, g = loss_and_grad(theta, layout, X[rows], Y[rows], loss, l1, l2, huber_delta, masks=masks)
            total += (J - penalty(theta, layout, l1, l2)[0]) * rows.shape[0]
            alpha = rate / (1.0 + rate_annealing * samples)
            mu = momentum(samples, momentum_start, momentum_ramp, momentum_stable)
            samples += rows.shape[0]
            steps += 1
            if optimizer == "adadelta":
                s0 = rho * s0 + (1 - rho) * g * g
                dx = -np.sqrt(s1 + epsilon) / np.sqrt(s0 + epsilon) * g
                s1 = rho * s1 + (1 - rho) * dx * dx
                theta = theta + dx
            elif optimizer == "adam":
                s0 = beta1 * s0 + (1 - beta1) * g
                s1 = beta2 * s1 + (1 - beta2) * g * g
                m_hat, v_hat = s0 / (1 - beta1 ** steps), s1 / (1 - beta2 ** steps)
                theta = theta - alpha * m_hat / (np.sqrt(v_hat) + epsilon)
            else:
                layer_alpha = np.zeros_like(theta)
                for layer, (w_off, b_off, _n_in, n_out, pieces, _code) in enumerate(layout):
                    layer_alpha[w_off:b_off + n_out * pieces] = alpha * rate_decay ** layer
                s0 = mu * s0 - layer_alpha * g
                # Nesterov in Bengio et al.'s form: theta += mu * v_new - alpha * g
                theta = theta + (mu * s0 - layer_alpha * g if nesterov else s0)
            if np.isfinite(max_w2):
                theta = max_norm(theta, layout, max_w2)
        epoch_loss.append(total / m)
    return theta, np.array(epoch_loss)


def central_difference(f, theta, eps=1e-4, order=2):
    """Numerical gradient of ``f`` at ``theta`` by central differences (order 2 or 4).

    See :func:`central_differences`.
    """
    return central_differences(f, theta, eps, both=False, order=order)


def central_differences(f, theta, eps=1e-4, both=True, order=4):
    """Two- and four-point central-difference gradients from one set of evaluations.

    Two-point (UFLDL's computeNumericalGradient): (f(t + eps e_i) - f(t - eps e_i)) / (2 eps),
    truncation error eps^2 f3 / 6 (f3: third derivative along e_i).
    Four-point (five-point stencil): (-f(t + 2 eps) + 8 f(t + eps) - 8 f(t - eps) + f(t - 2 eps)) / (12 eps),
    truncation error eps^4 f5 / 30. Returns (two_point, four_point) when ``both``.
    """
    theta = np.array(theta, dtype=np.float64)
    two, four = np.zeros_like(theta), np.zeros_like(theta)
    steps = (1, -1) if (order == 2 and not both) else (2, 1, -1, -2)
    for i in range(theta.shape[0]):
        old = theta[i]
        values = {}
        for step in steps:
            theta[i] = old + step * eps
            values[step] = f(theta)
        theta[i] = old
        two[i] = (values[1] - values[-1]) / (2 * eps)
        if len(steps) == 4:
            four[i] = (-values[2] + 8 * values[1] - 8 * values[-1] + values[-2]) / (12 * eps)
    if both:
        return two, four
    return two if order == 2 else four


def relative_difference(numerical, analytic):
    """UFLDL's check: ||num - ana|| / ||num + ana||."""
    return float(np.linalg.norm(numerical - analytic) / np.linalg.norm(numerical + analytic))


def targets(act, loss, rng, shape):
    """Valid targets of shape ``shape`` for an output activation and loss (one-hot for softmax)."""
    if act == "softmax":
        return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    if act == "sigmoid" and loss == "cross_entropy":
        return rng.random(shape).round(1)  # soft labels in [0, 1] are valid too
    return 2 * rng.standard_normal(shape)
