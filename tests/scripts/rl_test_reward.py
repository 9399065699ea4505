"""A dense test reward for RL mechanics: the share of digits in the response (any model gets
different scores within a group, so advantages are non-zero)."""


def digit_share(responses, golds):
    return [sum(c.isdigit() for c in r) / max(len(r), 1) for r in responses]
