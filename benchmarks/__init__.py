"""Benchmarks behind ``dima bench ...``: each module measures one thing and writes its section of docs/benchmarks.md.

Not part of the library: ``dima_core`` never imports this package (the CLI reaches it through its command registry,
``dima_core/cli.py``), and unlike ``dima_core`` it may use ``dima_ros`` (the ROS pipeline of ``dima bench latency``).
"""
