import { FormatRegistry } from '@sinclair/typebox';

// TypeBox checks a schema's `format` only against the formats registered here, and refuses a
// value whose format it does not know. The API's times are RFC 3339 date-times.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
if (!FormatRegistry.Has('date-time'))
  FormatRegistry.Set('date-time', (value) => DATE_TIME.test(value) && !Number.isNaN(Date.parse(value)));
