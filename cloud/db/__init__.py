"""The cloud's tables. Import models from here; ``Base.metadata`` is what the migrations must match."""

from cloud.db.api_keys import ApiKey
from cloud.db.audit import AuditEntry
from cloud.db.base import Base, UTCDateTime, new_id, utcnow
from cloud.db.billing import Invoice, InvoiceLine, Plan, Subscription, UsageAlert
from cloud.db.commands import Command
from cloud.db.configs import ConfigAck, DesiredConfig
from cloud.db.devices import Device, DeviceCredential, Heartbeat
from cloud.db.ingest import DeviceIngest, IngestWorkerStats
from cloud.db.lago import LagoCustomer, LagoEvent, LagoPlan
from cloud.db.pairing import PairingCode
from cloud.db.tenants import Project, Tenant
from cloud.db.usage import UsageRecord
from cloud.db.users import User
from cloud.db.voice_sessions import SessionEvent, VoiceSession
from cloud.db.webhooks import Webhook, WebhookDelivery

__all__ = [
    "ApiKey", "AuditEntry", "Base", "Command", "ConfigAck", "DesiredConfig", "Device", "DeviceCredential",
    "DeviceIngest", "Heartbeat", "IngestWorkerStats", "Invoice", "InvoiceLine", "LagoCustomer", "LagoEvent",
    "LagoPlan", "PairingCode", "Plan",
    "Project", "SessionEvent", "Subscription", "Tenant", "UTCDateTime", "UsageAlert", "UsageRecord", "User",
    "VoiceSession", "Webhook", "WebhookDelivery", "new_id", "utcnow",
]
