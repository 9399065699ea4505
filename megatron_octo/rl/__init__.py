"""Reinforcement learning (GRPO/PPO) on top of the megatron model: reward, rollouts, losses.

See docs/evaluation.md for the reward definition.
"""
