"""A dense test reward for RL mechanics: the share of digits in the response (any model gets
different scores within a group, so advantages are non-zero)."""


def digit_share(responses, golds):
    return [sum(c.isdigit() for c in r) / max(len(r), 1) for r in responses]


def has_digit(responses, golds):
    """1 if the response has a digit, else 0: coarse, so some groups of an untrained model's samples
    all score the same (dynamic sampling's refill has something to remove)."""
    return [float(any(c.isdigit() for c in r)) for r in responses]
