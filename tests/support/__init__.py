"""What the test suites share: plain modules that pytest never collects.

``client`` calls the local stack over HTTP (integration tests); ``service``
calls the layer and the real handlers in-process on moto's tables, and
``criteria`` builds users, devices and criteria (unit tests).
"""
