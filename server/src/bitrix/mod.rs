//! The Bitrix24 REST conventions (../shared/BITRIX24.md): requests, envelopes, paging,
//! filters, batch and the id mapping, as pure functions the facade's handlers use.
