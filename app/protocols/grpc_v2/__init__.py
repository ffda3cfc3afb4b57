"""The Open Inference Protocol (KServe v2) over gRPC: inference.proto and the modules protoc
generates from it (scripts/gen_grpc.sh; do not edit inference_pb2*)."""
