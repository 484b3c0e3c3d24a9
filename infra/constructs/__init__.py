"""One construct per concern; ``infra.stack.OcsfDetectStack`` only wires them together."""
