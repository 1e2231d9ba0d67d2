import { MemoryStorage } from '../helpers/memoryStorage.js';
import { storageConformance } from './conformance.js';

// The in-memory store other tests use must behave like the real ones.
storageConformance('memory (test helper)', async () => ({ storage: new MemoryStorage() }), { verifiesChecksum: true, exactKeyOrder: true });
