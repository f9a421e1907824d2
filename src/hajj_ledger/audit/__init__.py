"""What auditors use: the trail and the past (`reads`), the hash chain and its verification, signing keys and
exports' manifests, and their commands."""
