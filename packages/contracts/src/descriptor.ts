import { join } from 'node:path';

/**
 * Path of the binary FileDescriptorSet built by `buf build` from proto/. gRPC servers load it to
 * serve reflection, so `buf curl` and grpcurl can call them without the .proto files.
 */
export const descriptorSetPath: string = join(__dirname, 'generated', 'descriptor.binpb');
