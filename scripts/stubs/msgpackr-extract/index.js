// msgpackr (used by BullMQ) loads this optional native accelerator inside a try block and falls
// back to plain JavaScript when it throws. See README.md beside this file for why it is a stub.
throw new Error('msgpackr-extract is not shipped with narhub; msgpackr uses its JavaScript path');
