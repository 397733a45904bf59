"""The bottom layer: errors, durable-file helpers and facts about the machine, shared by every package.

It may import only the standard library; every other package of the project may import it.
"""
