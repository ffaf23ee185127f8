"""What tests share: processes they spawn, raw clients, waits, tokens and paths outside the repo."""
