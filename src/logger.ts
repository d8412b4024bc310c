import pino, { type Logger, type LevelWithSilent } from 'pino';

/**
 * One logger for server, hub and spoke: JSON lines on stdout (journald-friendly), with secrets
 * redacted wherever they might appear.
 */
export function createLogger(level: LevelWithSilent = 'info'): Logger {
  return pino({
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', '*.token', '*.secretKey', 'token', 'secretKey'],
      censor: '[redacted]',
    },
  });
}

export type { Logger };
