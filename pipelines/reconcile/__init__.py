"""Linking subscriptions to citizens, shard by shard, and deciding flags and status."""
