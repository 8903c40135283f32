"""One construct per concern; the stacks in ``infra.cdk.stacks`` only wire them together."""
