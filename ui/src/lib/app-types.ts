// App-only IPC types: the ones app-rust generates from crates/desktop into ./app/ (ts-rs).
export type { AppError } from './app/AppError';
export type { ServerView } from './app/ServerView';
export type { Settings } from './app/Settings';
export type { EventPayload } from './app/EventPayload';
export type { ReadingsPayload } from './app/ReadingsPayload';
export type { LogPayload } from './app/LogPayload';
export type { AsapAnyResponse } from './app/AsapAnyResponse';

export type { CaldavAccount } from './app/CaldavAccount';
export type { CaldavState } from './app/CaldavState';
export type { CaldavStatus } from './app/CaldavStatus';
