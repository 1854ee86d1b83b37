"""ConnectHub's entry points: the `connecthub` CLI, the web app (admin), and `connecthub up`.

These are the only modules that import `deployments`, the layer that talks to Prefect; the core
(`connecthub.*` outside this package) and the generic flow never import them.
"""
