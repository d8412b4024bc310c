import { uploadDerivationClosure } from './derivation-upload.js';
import { evaluateJobs, lockFlake, showDerivations } from './evaluator.js';

/**
 * Where an evaluation's facts come from: the locked flake, its jobs, the derivation graph below
 * them, and the upload of the `.drv` closure. Nix by default (`nixEvaluationSource`); the hub's
 * benches stand a synthetic graph in here to measure the hub apart from Nix's evaluation.
 */
export interface EvaluationSource {
  lock: typeof lockFlake;
  jobs: typeof evaluateJobs;
  derivations: typeof showDerivations;
  upload: typeof uploadDerivationClosure;
}

export const nixEvaluationSource: EvaluationSource = {
  lock: lockFlake,
  jobs: evaluateJobs,
  derivations: showDerivations,
  upload: uploadDerivationClosure,
};
