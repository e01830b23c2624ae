/** Named aliases for the schemas in `schema.ts`, which is generated from openapi.json. */
import type { components } from "./schema.js";

type Schemas = components["schemas"];

export type TokenResponse = Schemas["TokenResponse"];
export type User = Schemas["UserOut"];
export type UserPage = Schemas["UserPage"];
export type ApiKey = Schemas["ApiKeyOut"];
export type ApiKeyCreated = Schemas["ApiKeyCreated"];
export type Ticket = Schemas["TicketResponse"];
export type ChatRequest = Schemas["ChatRequest"];
export type ChatResponse = Schemas["ChatResponse"];
export type CancelResponse = Schemas["CancelResponse"];
export type HistoryItem = Schemas["HistoryItem"];
export type Conversation = Schemas["ConversationOut"];
export type ConversationPage = Schemas["ConversationPage"];
export type ConversationDetail = Schemas["ConversationDetail"];
export type ConversationExport = Schemas["ConversationExport"];
export type SearchHit = Schemas["SearchHitOut"];
export type Document = Schemas["DocumentOut"];
export type IngestResponse = Schemas["IngestResponse"];
export type IngestJob = Schemas["IngestJobOut"];
export type SearchResponse = Schemas["SearchResponse"];
export type RagContext = Schemas["RagContextResponse"];
export type ModelsResponse = Schemas["ModelsResponse"];
export type RoleUpdate = Schemas["RoleUpdate"];
export type ProvisionRequest = Schemas["ProvisionRequest"];
export type ProvisionJob = Schemas["ProvisionJobOut"];
export type Usage = Schemas["UsageOut"];
export type UserUsage = Schemas["UserUsageOut"];
export type Liveness = Schemas["Liveness"];
export type Readiness = Schemas["Readiness"];
export type ErrorEnvelope = Schemas["ErrorEnvelope"];
