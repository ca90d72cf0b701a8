// tsc does not copy non-TypeScript files; the descriptor set ships beside the compiled code.
import { copyFileSync } from 'node:fs';

copyFileSync('src/generated/descriptor.binpb', 'dist/generated/descriptor.binpb');
