"""Judging runs: ranking arms, the verdict in words, performance profiles across workloads, targets."""
