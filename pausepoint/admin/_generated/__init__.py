"""gRPC stubs generated from ../proto/scalar_admin.proto by scripts/gen_proto.py."""
