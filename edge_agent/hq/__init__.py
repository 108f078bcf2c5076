"""HQ's side: the reference consumer and its report, and the contract (JSON Schemas, AsyncAPI).
It knows the wire models only, never the store's internals."""
