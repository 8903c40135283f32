"""One description of each environment (regions, buckets, queues, finisher paths), read by everything.

``config/<env>.yaml`` holds the values; :mod:`config.model` the typed model; :mod:`config.routing` the Lambda's
routing table (kept free of YAML so the Lambda asset needs only pydantic).
"""
