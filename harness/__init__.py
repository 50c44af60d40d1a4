"""The harness shared by tests/ and bench/: real processes (servers, relays, proxies, tools),
in-process repositories and fetchers, corpus access and tables. Neither tests/ nor bench/
imports the other; both import this."""
