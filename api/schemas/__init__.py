"""Request and response shapes; flask-openapi3 validates with them and documents them.

One module per part of the API; this package lists them all, so routes say `schemas.X`."""
from api.schemas.base import (
    ConversationPath, ErrorBody, ErrorEnvelope, EventsQuery, FileId, Health, IdempotencyHeader, JobPath,
    ListQuery, MessageText, Request, Strict, ToolText, WaitQuery,
)
from api.schemas.conversations import (
    Conversation, ConversationIn, ConversationPage, ConversationPatch, ConversationWithMessages, EditIn, ForkIn,
    ForkOrigin, ForkedJob, INCLUDE_FIELD, MODEL_FIELD, Message, MessageIn, MessagePage, MessageSeqPath,
    MessagesQuery, ModelList, ModelStatus, ModelThinking, ReadQuery, RegenerateIn, ServerToolIn, Summary,
    THINKING_FIELD, TOOLS_FIELD, TOOL_CHOICE_FIELD, ThinkingIn, ToolChoiceIn, ToolIn,
)
from api.schemas.files import (
    FileDeleteQuery, FileOut, FilePage, FilePath,
)
from api.schemas.jobs import (
    Job, JobEnvelope, JobRequest, Reply, RequiredAction, ToolCall, ToolResultIn, ToolResultText, ToolResultsIn,
    Webhook, WebhookAttempt, WebhookSecret,
)
from api.schemas.usage import (
    Day, Usage, UsageDay, UsageQuery, UsageReport,
)
from api.schemas.seed import (
    ChatIn, ChatOut, ChatPending, NewChatIn, NewChatOut, SeedConversation, SeedConversationBody,
    SeedConversationGetQuery, SeedConversationQuery, SeedMessage,
)
