"""The domain: the vocabulary, the rules of each step (the catalogue), the aggregates and the commands.

It imports nothing of the other rooms: the store, the identity vault, the audit and the simulator build on it.
"""
